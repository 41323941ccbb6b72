"""The artifact storage resource: the one owner of every path the platform writes."""

from typing import Any, Optional

import dagster as dg
from pydantic import Field

from steering_assets.core.artifacts import ArtifactStore


class ArtifactStorage(dg.ConfigurableResource):
    """Every artifact lives under ``root``; writes are atomic and path parts are sanitised.

    ``root`` is a folder (local, or a shared filesystem every worker mounts) or an object-store
    URL (``s3://bucket/prefix``, ``gs://bucket/prefix``) reached through fsspec; see
    steering_assets/core/artifacts.py for how a URL root keeps the same guarantees.
    """

    root: str = Field(description="Folder or s3:// / gs:// URL that holds every artifact (env PERSONA_ARTIFACT_ROOT).")
    cache_dir: Optional[str] = Field(
        default=None,
        description="Object-store roots only: this worker's local mirror (default PERSONA_ARTIFACT_CACHE, "
        "else ~/.cache/steering-assets/artifacts/<hash of the URL>).",
    )
    storage_options: dict[str, Any] = Field(
        default_factory=dict,
        description="Object-store roots only: fsspec options (e.g. endpoint_url); credentials come from the "
        "provider's usual environment variables or files, never from here.",
    )

    def store(self) -> ArtifactStore:
        return ArtifactStore(self.root, cache_dir=self.cache_dir, storage_options=self.storage_options or None)
