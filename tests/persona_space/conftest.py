from tests.steering.conftest import (  # noqa: F401 (the same fixtures as steering's)
    demo_conversations,
    tiny_model_factory,
)
