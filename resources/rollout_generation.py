"""Where rollouts are generated: the persona model loaded here, or an OpenAI-compatible server.

``backend="local"`` loads ``source`` (the persona model, ``PERSONA_MODEL``) in this run and
generates in left-padded batches; ``backend="openai"`` sends one chat completion per reply to
``base_url`` (a vLLM server on a GPU machine) and loads nothing locally.
"""

import gc
from typing import Any, Optional

import dagster as dg
from pydantic import Field, PrivateAttr

from steering_assets.resources.language_model import ModelSource

GENERATION_BACKENDS = ("local", "openai")


class RolloutGeneratorResource(dg.ConfigurableResource):
    """The rollout generation backend (env PERSONA_GENERATION_BACKEND, _BASE_URL, _MODEL, OPENAI_API_KEY)."""

    source: ModelSource
    backend: str = Field(default="local", description='"local" (the persona model, loaded in this run) or "openai" (a server).')
    base_url: Optional[str] = Field(default=None, description="openai backend: the server's base URL, e.g. http://gpu-box:8000/v1.")
    model: Optional[str] = Field(default=None, description="openai backend: the served model's name (default: the source model's name).")
    api_key: Optional[str] = Field(default=None, description="openai backend: API key (EnvVar('OPENAI_API_KEY'); any value for vLLM).")
    concurrency: int = Field(default=16, gt=0, description="openai backend: requests in flight.")
    timeout: float = Field(default=120.0, gt=0)
    max_retries: int = Field(default=4, ge=0, description="openai backend: the client's retries with backoff.")
    batch_size: int = Field(default=16, gt=0, description="local backend: prompts per generate call.")
    device: str = Field(default="auto")
    dtype: str = Field(default="auto")

    _model: Any = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        from steering_assets.core.errors import InputError

        if self.backend not in GENERATION_BACKENDS:
            raise InputError(f"generation backend {self.backend!r} (PERSONA_GENERATION_BACKEND) is not one of {GENERATION_BACKENDS}")
        if self.backend == "openai":
            if not self.base_url:
                raise InputError("the generation backend is 'openai' but PERSONA_GENERATION_BASE_URL is not set "
                                 "(the server's URL, e.g. http://gpu-box:8000/v1)")
            return
        from steering_assets.models.loading import load_causal_lm

        log = context.log.info if context.log else None
        self._model = load_causal_lm(self.source.resolved_path(log=log), device=self.device, dtype=self.dtype)

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        self._model = None
        gc.collect()

    def generator(self) -> Any:
        """A ``steering_assets.models.generation.ReplyGenerator`` for this run."""
        from steering_assets.models.generation import LocalReplyGenerator, OpenAIReplyGenerator

        if self.backend == "openai":
            return OpenAIReplyGenerator(self.model or self.source.model_name_or_path, self.base_url, self.api_key or "none",
                                        concurrency=self.concurrency, timeout=self.timeout, max_retries=self.max_retries)
        if self._model is None:
            raise RuntimeError("the local generation model is only available while a run executes (setup_for_execution)")
        return LocalReplyGenerator(self._model, self.source.get_tokenizer(), self.source.identity, batch_size=self.batch_size)

    def supports_system_role(self) -> bool:
        """Whether the persona model's chat template takes a system turn (asked of the local tokenizer)."""
        from steering_assets.models.generation import supports_system_role

        return supports_system_role(self.source.get_tokenizer())
