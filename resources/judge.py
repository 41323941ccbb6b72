"""The judge: an OpenAI-compatible endpoint, a local causal LM's next-token logprobs, or a chat model's likelihood ratios."""

import functools
from pathlib import Path
from typing import Any, Optional

import dagster as dg
from pydantic import Field, PrivateAttr

BACKENDS = ("openai", "local", "likelihood")


@functools.lru_cache(maxsize=2)
def _load_local_judge(name_or_path: str, device: str, dtype: str) -> tuple[Any, Any]:
    # One load per process: every partition of a run (and every run of `make demo`) shares it.
    from transformers import AutoTokenizer

    from steering_assets.models.loading import load_causal_lm
    from steering_assets.models.pretrained import resolve_model

    # A .gguf file or package:NAME is converted once into the model cache (steering_assets/models/pretrained.py).
    path = resolve_model(name_or_path)
    return load_causal_lm(path, device=device, dtype=dtype), AutoTokenizer.from_pretrained(path)


class JudgeResource(dg.ConfigurableResource):
    """``backend="openai"`` (any OpenAI-compatible URL), ``backend="local"`` (a local model's next-token logprobs
    on the rubric prompt) or ``backend="likelihood"`` (a local chat model's likelihood ratios on the item's parts,
    ``judge/likelihood.py``: the offline judge of the demo, trained on nothing)."""

    backend: str = Field(default="openai", description='"openai", "local" or "likelihood".')
    model: str = Field(default="gpt-4.1-mini", description="Judge model name (openai backend).")
    api_key: Optional[str] = Field(default=None, description="API key; set it with EnvVar('OPENAI_API_KEY').")
    base_url: Optional[str] = Field(default=None, description="OpenAI-compatible base URL (vLLM, llama.cpp, Ollama...).")
    concurrency: int = Field(default=16, gt=0)
    timeout: float = Field(default=30.0, gt=0)
    max_retries: int = Field(default=4, ge=0)
    local_model: Optional[str] = Field(
        default=None, description="Local judge model folder or hub id (local backend; env PERSONA_JUDGE_LOCAL_MODEL)."
    )
    number_scale: str = Field(
        default="auto",
        description='"auto": 0-100 when the judge holds one token per number, else a 0-9 rating mapped to 0-100 (a '
        'setup probe or the local tokenizer decides); "0-100": refuse a judge that spells numbers digit by digit; '
        '"0-9": always the 0-9 rating (env PERSONA_JUDGE_NUMBER_SCALE).',
    )
    device: str = Field(default="auto", description='Local backend: "auto", "cpu", "cuda", ...')
    dtype: str = Field(default="auto", description='Local backend: "auto", "float32", "bfloat16", ...')

    _judge: Any = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        # Fail before any work when the judge cannot run (the key itself is never shown).
        from steering_assets.judge.judgments import NUMBER_SCALES, JudgeConfigurationError

        if self.backend not in BACKENDS:
            raise JudgeConfigurationError(f"judge backend {self.backend!r} is not one of {list(BACKENDS)}")
        if self.number_scale not in NUMBER_SCALES:
            raise JudgeConfigurationError(f"judge number_scale {self.number_scale!r} is not one of {list(NUMBER_SCALES)}")
        if self.backend == "openai" and not self.api_key:
            raise JudgeConfigurationError(
                "the judge backend is 'openai' but no API key is set: export OPENAI_API_KEY (any non-empty value "
                "for a local server), or set PERSONA_JUDGE_BACKEND=local with PERSONA_JUDGE_LOCAL_MODEL"
            )
        if self.backend in ("local", "likelihood") and not self.local_model:
            raise JudgeConfigurationError(
                f"the judge backend is {self.backend!r} but no judge model is set: export PERSONA_JUDGE_LOCAL_MODEL "
                "(a local model folder, a .gguf file or package:NAME)"
            )

    @property
    def judge_name(self) -> str:
        if self.backend == "openai":
            return self.model
        from steering_assets.models.loading import local_model_identity
        from steering_assets.models.pretrained import gguf_sha256, is_gguf_source, locate_gguf

        if is_gguf_source(self.local_model):
            identity = f"{self.local_model}@{gguf_sha256(locate_gguf(self.local_model))[:12]}"
        else:
            identity = local_model_identity(self.local_model)
        if self.backend == "likelihood":
            from steering_assets.judge.likelihood import LIKELIHOOD_JUDGE_VERSION

            # The recipe's version is part of the judge's identity: a new recipe re-scores, and marks its dependants stale.
            return f"likelihood-v{LIKELIHOOD_JUDGE_VERSION}:{identity}"
        return f"local:{identity}"

    def judge(self, cache_dir: Path) -> Any:
        """The scorer for this run, with its judgment cache under ``cache_dir``."""
        from steering_assets.core.artifacts import fingerprint
        from steering_assets.judge.judgments import JudgmentCache
        from steering_assets.judge.local import LocalJudge
        from steering_assets.judge.openai_judge import OpenAIJudge

        if self._judge is None:
            cache = JudgmentCache(Path(cache_dir) / f"judgments-{fingerprint(self.judge_name)[:16]}.jsonl")
            if self.backend == "likelihood":
                from steering_assets.judge.likelihood import LikelihoodJudge

                model, tokenizer = _load_local_judge(self.local_model, self.device, self.dtype)
                self._judge = LikelihoodJudge(model, tokenizer, self.judge_name, cache=cache)
            elif self.backend == "local":
                model, tokenizer = _load_local_judge(self.local_model, self.device, self.dtype)
                self._judge = LocalJudge(model, tokenizer, self.judge_name, cache=cache, number_scale=self.number_scale)
            else:
                self._judge = OpenAIJudge(self.model, api_key=self.api_key, base_url=self.base_url,
                                          concurrency=self.concurrency, timeout=self.timeout,
                                          max_retries=self.max_retries, cache=cache, number_scale=self.number_scale)
        return self._judge
