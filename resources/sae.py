"""Sparse autoencoders (JumpReLU, Gemma Scope params.npz layout) listed in a JSON file."""

import functools
from typing import Optional

import dagster as dg
from pydantic import Field


@functools.lru_cache(maxsize=2)
def _load(config_path: str, d_model: Optional[int], n_layers: Optional[int]):
    from steering_assets.features.sae import load_sae_set

    return load_sae_set(config_path, d_model=d_model, n_layers=n_layers)


class SAEResource(dg.ConfigurableResource):
    """``config_path`` lists ``{layer, average_l0, path}`` entries (env PERSONA_SAE_CONFIG)."""

    config_path: str = Field(description="JSON list of SAEs, one per layer (env PERSONA_SAE_CONFIG).")

    def load(self, d_model: Optional[int] = None, n_layers: Optional[int] = None) -> dict:
        return _load(self.config_path, d_model, n_layers)


class ConceptSentences(dg.ConfigurableResource):
    """Folder of concept files of labelled sentences (env PERSONA_CONCEPTS_ROOT): ``<concept>.jsonl``
    (``{"sentence", "concept_strength_label"}`` a line) or ``<concept>.csv`` (header
    ``sentence,concept_strength_label``, as the interpretability pipeline writes it)."""

    root: str = Field(description="Folder of concept sentence files, .jsonl or .csv (env PERSONA_CONCEPTS_ROOT).")

    def survey(self):
        """Every concept file of the root, and the entries that are not (``features.concepts.survey_concepts``)."""
        from steering_assets.features.concepts import survey_concepts

        return survey_concepts(self.root)

    def source(self, concept: str):
        """The ``.jsonl`` or ``.csv`` file of one concept."""
        from steering_assets.features.concepts import concept_source

        return concept_source(self.root, concept)
