"""Sparse autoencoders (JumpReLU, Gemma Scope params.npz layout) listed in a JSON file."""

import functools
from typing import Optional

import dagster as dg
from pydantic import Field


@functools.lru_cache(maxsize=2)
def _load(config_path: str, d_model: Optional[int], n_layers: Optional[int]):
    from steering_assets.models.sae import load_sae_set

    return load_sae_set(config_path, d_model=d_model, n_layers=n_layers)


class SAEResource(dg.ConfigurableResource):
    """``config_path`` lists ``{layer, average_l0, path}`` entries (env PERSONA_SAE_CONFIG)."""

    config_path: str = Field(description="JSON list of SAEs, one per layer (env PERSONA_SAE_CONFIG).")

    def load(self, d_model: Optional[int] = None, n_layers: Optional[int] = None) -> dict:
        return _load(self.config_path, d_model, n_layers)
