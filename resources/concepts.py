"""Where the labelled concept sentences live."""

import dagster as dg
from pydantic import Field


class ConceptSentences(dg.ConfigurableResource):
    """Folder of concept files of labelled sentences (env PERSONA_CONCEPTS_ROOT): ``<concept>.jsonl``
    (``{"sentence", "concept_strength_label"}`` a line) or ``<concept>.csv`` (header
    ``sentence,concept_strength_label``, as the interpretability pipeline writes it)."""

    root: str = Field(description="Folder of concept sentence files, .jsonl or .csv (env PERSONA_CONCEPTS_ROOT).")

    def survey(self):
        """Every concept file of the root, and the entries that are not (``features.concepts.survey_concepts``)."""
        from steering_assets.formats.concepts import survey_concepts

        return survey_concepts(self.root)

    def source(self, concept: str):
        """The ``.jsonl`` or ``.csv`` file of one concept."""
        from steering_assets.formats.concepts import concept_source

        return concept_source(self.root, concept)
