"""One settings reader: every PERSONA_* variable is read by steering_assets.core.settings, typed and documented."""

import ast
import re
from dataclasses import fields
from pathlib import Path

import pytest

from steering_assets.core.settings import Settings, SettingsError, env_names, read_setting, settings_table

ROOT = Path(__file__).resolve().parents[1]


def test_the_settings_page_is_the_table_of_the_code():
    page = (ROOT / "docs" / "settings.md").read_text()
    assert page == settings_table(), "docs/settings.md is stale: python -m steering_assets.core.settings > docs/settings.md"


def test_env_example_names_only_known_settings_and_every_one_of_them():
    example = (ROOT / ".env.example").read_text()
    named = set(re.findall(r"^#?\s*((?:PERSONA|OPENAI)_[A-Z_]+)=", example, flags=re.M))
    known = set(env_names()) | {"OPENAI_API_KEY"}
    assert named - known == set(), f".env.example names variables nothing reads: {sorted(named - known)}"
    assert set(env_names()) - named == set(), f".env.example leaves out: {sorted(set(env_names()) - named)}"


def test_no_module_but_the_settings_reads_a_persona_variable_from_the_environment():
    offending = []
    for package in ("steering_assets", "resources", "partitions", "demo"):
        for path in (ROOT / package).rglob("*.py"):
            if path == ROOT / "steering_assets" / "core" / "settings.py":
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                # os.environ.get("PERSONA_..."), os.environ["PERSONA_..."], os.getenv("PERSONA_..."), EnvVar("PERSONA_...")
                if isinstance(node, (ast.Call, ast.Subscript)):
                    text = ast.unparse(node)
                    if re.search(r"(environ|getenv|EnvVar)\b.*['\"]PERSONA_", text):
                        offending.append(f"{path.relative_to(ROOT)}:{node.lineno}: {text[:80]}")
    assert not offending, offending


def test_values_are_typed_and_bad_ones_name_the_variable():
    settings = Settings.from_env({"PERSONA_DATASETS_PER_RUN": "3", "PERSONA_DATA_ROOT": " /data ", "PERSONA_DTYPE": ""})
    assert (settings.datasets_per_run, settings.data_root, settings.dtype, settings.personas_per_run) == (3, "/data", "auto", 8)
    with pytest.raises(SettingsError, match=r"PERSONA_PERSONAS_PER_RUN='0': expected a whole number, at least 1"):
        Settings.from_env({"PERSONA_PERSONAS_PER_RUN": "0"})
    with pytest.raises(SettingsError, match="PERSONA_JUDGE_BACKEND='gpt'.*openai, local, likelihood"):
        Settings.from_env({"PERSONA_JUDGE_BACKEND": "gpt"})
    assert read_setting("automation_seconds", {"PERSONA_AUTOMATION_SECONDS": "5"}) == 5
    assert read_setting("automation_seconds", {}) == 30


def test_the_steering_judge_falls_back_to_the_judge_setting_by_setting():
    settings = Settings.from_env({"PERSONA_JUDGE_BACKEND": "local", "PERSONA_JUDGE_LOCAL_MODEL": "/m/judge",
                                  "PERSONA_STEERING_JUDGE_LOCAL_MODEL": "/m/steering"})
    assert settings.judge_setting("backend", steering=True) == "local"
    assert settings.judge_setting("local_model", steering=True) == "/m/steering"
    assert settings.judge_setting("local_model") == "/m/judge"


def test_settings_shape_the_definitions_without_touching_the_environment(monkeypatch):
    from steering_assets.definitions import build_definitions

    for name in env_names():
        monkeypatch.delenv(name, raising=False)
    defs = build_definitions(settings=Settings(data_root="/d", artifact_root="/a", model="m", revet_cron="0 1 * * *",
                                                datasets_per_run=4, scenario_scan_seconds=7))
    assert defs.resources["rollouts"].data_root == "/d"
    assert defs.resolve_schedule_def("revetting_schedule").cron_schedule == "0 1 * * *"
    assert defs.resolve_sensor_def("scenario_discovery_sensor").minimum_interval_seconds == 7
    split = defs.resolve_assets_def(["roles", "persona_training_split"])
    assert split.backfill_policy.max_partitions_per_run == 4


def test_importing_the_code_location_reads_no_setting(monkeypatch):
    """A bad value fails when the definitions are built (named), not when a module is imported."""
    import importlib

    import steering_assets.definitions as definitions

    monkeypatch.setenv("PERSONA_PERSONAS_PER_RUN", "many")
    importlib.reload(definitions)
    with pytest.raises(SettingsError, match="PERSONA_PERSONAS_PER_RUN='many'"):
        definitions.defs()
    assert [f.metadata["env"] for f in fields(Settings)] == env_names()
