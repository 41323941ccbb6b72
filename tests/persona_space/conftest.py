from tests.steering.conftest import demo_conversations, tiny_model_factory  # noqa: F401 (the same fixtures as steering's)
