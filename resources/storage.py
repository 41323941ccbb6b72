"""The artifact storage resource: the one owner of every path the platform writes."""


import dagster as dg
from pydantic import Field

from steering_assets.artifacts import ArtifactStore


class ArtifactStorage(dg.ConfigurableResource):
    """Every artifact lives under ``root``; writes are atomic and path parts are sanitised."""

    root: str = Field(description="Folder that holds every artifact (env PERSONA_ARTIFACT_ROOT).")

    def store(self) -> ArtifactStore:
        return ArtifactStore(self.root)
