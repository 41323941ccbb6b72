"""The language-model resource: loaded once per run, frozen, on the resolved device, freed in teardown."""

import dagster as dg
import pytest

from resources.language_model import LanguageModelResource, ModelSource


def test_model_is_loaded_frozen_and_released(demo_workspace):
    resource = LanguageModelResource(source=ModelSource(model_name_or_path=str(demo_workspace.model_path), local_files_only=True))
    context = dg.build_init_resource_context()
    resource.setup_for_execution(context)
    model = resource.get_model()
    assert model.device.type == "cpu" and not model.training
    assert not any(p.requires_grad for p in model.parameters())
    assert resource.get_tokenizer().chat_template
    resource.teardown_after_execution(context)
    with pytest.raises(RuntimeError, match="only available while a run executes"):
        resource.get_model()


def test_missing_model_names_the_setting(tmp_path):
    resource = LanguageModelResource(source=ModelSource(model_name_or_path=str(tmp_path / "nowhere"), local_files_only=True))
    with pytest.raises(OSError, match="Set PERSONA_MODEL"):
        resource.setup_for_execution(dg.build_init_resource_context())


def test_bad_dtype_is_refused(demo_workspace):
    resource = LanguageModelResource(source=ModelSource(model_name_or_path=str(demo_workspace.model_path)), dtype="float8")
    with pytest.raises(ValueError, match='dtype .float8. is not one of'):
        resource.setup_for_execution(dg.build_init_resource_context())


def test_a_local_judge_retrained_in_place_is_a_new_judge(tmp_path):
    import os

    from resources.judge import JudgeResource

    folder = tmp_path / "judge"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"weights-1")
    judge = JudgeResource(backend="local", local_model=str(folder))
    first = judge.judge_name
    assert first.startswith(f"local:{folder}@") and judge.judge_name == first
    (folder / "model.safetensors").write_bytes(b"weights-22")
    os.utime(folder / "model.safetensors", ns=(1, 1))
    assert judge.judge_name != first  # its cached judgments no longer apply
    assert JudgeResource(backend="local", local_model="org/hub-judge").judge_name == "local:org/hub-judge"
