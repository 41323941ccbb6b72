import pytest

from tests.world import SOURCE_MODEL


@pytest.fixture(scope="session")
def tiny_model_factory(demo_workspace):
    from transformers import AutoModelForCausalLM

    def make():
        return AutoModelForCausalLM.from_pretrained(demo_workspace.model_path, local_files_only=True).eval()

    return make


@pytest.fixture(scope="session")
def demo_conversations(demo_workspace):
    from steering_assets.formats.rollouts import ROLES, PersonaRef
    from steering_assets.personas.dataset import build_persona_dataset

    def conversations(name, count):
        frame, _ = build_persona_dataset(PersonaRef(ROLES, SOURCE_MODEL, name), demo_workspace.data_root)
        return frame["messages"].to_list()[:count]

    return conversations
