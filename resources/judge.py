"""The LLM judge: an OpenAI-compatible endpoint, or a local model through the language-model resource."""

from pathlib import Path
from typing import Any, Optional

import dagster as dg
from pydantic import Field


class JudgeResource(dg.ConfigurableResource):
    """``backend="openai"`` (any OpenAI-compatible URL) or ``backend="local"`` (offline, next-token logprobs)."""

    backend: str = Field(default="openai", description='"openai" or "local".')
    model: str = Field(default="gpt-4.1-mini", description="Judge model name (openai backend).")
    api_key: Optional[str] = Field(default=None, description="API key; set it with EnvVar('OPENAI_API_KEY').")
    base_url: Optional[str] = Field(default=None, description="OpenAI-compatible base URL (vLLM, llama.cpp, Ollama...).")
    concurrency: int = Field(default=16, gt=0)
    timeout: float = Field(default=30.0, gt=0)
    max_retries: int = Field(default=4, ge=0)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        # Fail before any work when the judge cannot run (the key itself is never shown).
        if self.backend == "openai" and not self.api_key:
            from steering_assets.vetting.judge import JudgeConfigurationError

            raise JudgeConfigurationError(
                "the judge backend is 'openai' but no API key is set: export OPENAI_API_KEY (any non-empty value "
                "for a local server), or set backend='local' to judge with the local model"
            )
        if self.backend not in ("openai", "local"):
            raise ValueError(f'judge backend {self.backend!r} is not "openai" or "local"')

    def judge(self, cache_dir: Path, language_model: Any = None) -> Any:
        from steering_assets.artifacts import fingerprint
        from steering_assets.vetting.judge import JudgmentCache, OpenAIJudge
        from steering_assets.vetting.local import LocalJudge

        name = self.model if self.backend == "openai" else f"local:{language_model.model_name}"
        cache = JudgmentCache(Path(cache_dir) / f"judgments-{fingerprint(name)[:16]}.jsonl")
        if self.backend == "local":
            if language_model is None:
                raise ValueError("the local judge needs the language_model resource")
            return LocalJudge(language_model.get_model(), language_model.get_tokenizer(), name, cache=cache)
        return OpenAIJudge(self.model, api_key=self.api_key, base_url=self.base_url, concurrency=self.concurrency,
                           timeout=self.timeout, max_retries=self.max_retries, cache=cache)
