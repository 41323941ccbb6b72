"""Where the raw rollouts live (persona-subspace or assistant-axis layout)."""


from pathlib import Path

import dagster as dg
from pydantic import Field

from steering_assets.formats.rollouts import Discovery, PersonaKind, discover_personas


class PersonaRollouts(dg.ConfigurableResource):
    """The data root (read only): ``{data_root}/{source_model}/roles_240|traits_240/{responses,extract_scores}/``
    (persona-subspace) or ``{data_root}/{source_model}/{responses,scores}/`` (assistant-axis, roles)."""

    data_root: str = Field(description="Folder of source-model folders (env PERSONA_DATA_ROOT).")

    @property
    def root(self) -> Path:
        return Path(self.data_root).expanduser()

    def discover(self, kind: PersonaKind) -> Discovery:
        return discover_personas(self.root, kind)
