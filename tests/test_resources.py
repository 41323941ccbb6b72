"""The language-model resource: loaded once per run, frozen, on the resolved device, freed in teardown."""

import dagster as dg
import pytest

from steering_assets.resources.language_model import LanguageModelResource, ModelSource


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

    from steering_assets.resources.judge import JudgeResource

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


def test_the_steering_judge_defaults_to_the_judge_settings_and_each_can_be_set_apart(monkeypatch):
    from steering_assets.core.settings import Settings
    from steering_assets.definitions import build_definitions
    from steering_assets.resources.defaults import default_judge as judge_from
    from steering_assets.resources.judge import JudgeResource

    def default_judge(prefix: str = "PERSONA_JUDGE"):
        return judge_from(Settings.from_env(), steering=prefix == "PERSONA_STEERING_JUDGE")

    for name in ("BACKEND", "LOCAL_MODEL", "MODEL", "NUMBER_SCALE"):
        monkeypatch.delenv(f"PERSONA_STEERING_JUDGE_{name}", raising=False)
    monkeypatch.setenv("PERSONA_JUDGE_BACKEND", "local")
    monkeypatch.setenv("PERSONA_JUDGE_LOCAL_MODEL", "/models/vetting-judge")
    steering = default_judge("PERSONA_STEERING_JUDGE")
    assert (steering.backend, steering.local_model) == ("local", "/models/vetting-judge")
    monkeypatch.setenv("PERSONA_STEERING_JUDGE_LOCAL_MODEL", "/models/steering-judge")
    assert default_judge("PERSONA_STEERING_JUDGE").local_model == "/models/steering-judge"
    assert default_judge().local_model == "/models/vetting-judge"
    monkeypatch.setenv("PERSONA_STEERING_JUDGE_BACKEND", "likelihood")  # the offline likelihood-ratio judge
    assert (default_judge("PERSONA_STEERING_JUDGE").backend, default_judge().backend) == ("likelihood", "local")
    monkeypatch.setenv("PERSONA_STEERING_JUDGE_BACKEND", "openai")
    monkeypatch.setenv("PERSONA_STEERING_JUDGE_MODEL", "gpt-4o-mini")
    assert (default_judge("PERSONA_STEERING_JUDGE").backend, default_judge("PERSONA_STEERING_JUDGE").model) == (
        "openai", "gpt-4o-mini")
    # A judge passed in code serves both, unless a steering judge is passed too.
    judge = JudgeResource(backend="local", local_model="a")
    assert build_definitions("d", "a", "m", judge=judge).resources["steering_judge"] is judge
    other = JudgeResource(backend="local", local_model="b")
    assert build_definitions("d", "a", "m", judge=judge, steering_judge=other).resources["steering_judge"] is other
