"""The sentence encoder (all-MiniLM-L6-v2 by default) behind the persona classifier."""

import functools
from typing import Any, Optional

import dagster as dg
from pydantic import Field


@functools.lru_cache(maxsize=2)
def _load(path: Optional[str], device: str) -> Any:
    from steering_assets.models.encoder import SentenceEncoder

    return SentenceEncoder(path, device=device)


class SentenceEncoderResource(dg.ConfigurableResource):
    model_path: Optional[str] = Field(default=None, description="Sentence-transformers folder (default: the packaged all-MiniLM-L6-v2).")
    device: str = Field(default="cpu")

    def get_encoder(self) -> Any:
        return _load(self.model_path, self.device)
