"""Artifact storage: one root owns every path, every write is atomic, every artifact has a manifest.

An artifact is a folder of files plus ``manifest.json``. The manifest is removed
before new files are written and written last, listing each file's SHA-256, so a
run killed half-way leaves a folder that ``load_manifest`` refuses rather than a
truncated artifact read as valid. The manifest also records the fingerprint
(config and input hashes) that made the artifact, which lets a re-run skip work
whose inputs and config are unchanged.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

from steering_assets.personas.layout import validate_name
from steering_assets.errors import InputError

MANIFEST = "manifest.json"
_HASH_CHUNK = 1 << 20


def file_digest(path: Path | str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_HASH_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fingerprint(payload: Any) -> str:
    """Stable hash of a JSON-able payload (config, input hashes, code version)."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class ArtifactIntegrityError(InputError, RuntimeError):
    """An artifact folder whose manifest is missing or does not match its files."""


@contextlib.contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; rename it into place only if the block succeeds."""
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".partial", dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)


def write_json_atomic(obj: Any, final: Path) -> None:
    with atomic_path(final) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")


def write_npz(arrays: dict[str, Any], path: Path) -> None:
    """``np.savez`` to exactly ``path`` (through a handle, since savez appends ".npz" to bare names)."""
    import numpy as np

    with open(path, "wb") as handle:
        np.savez(handle, **arrays)


class ArtifactStore:
    """Resolves artifact paths under ``root`` and writes artifacts atomically."""

    def __init__(self, root: Path | str):
        self.root = Path(root).expanduser().resolve()

    def folder(self, *parts: str) -> Path:
        """``root/part/part/...`` where every part must be a safe single name component."""
        for part in parts:
            validate_name(part, "artifact path component")
        path = self.root.joinpath(*parts).resolve()
        if self.root not in path.parents:
            raise ValueError(f"artifact path {path} escapes the artifact root {self.root}")
        return path

    def write_artifact(
        self,
        folder: Path,
        writers: dict[str, Callable[[Path], None]],
        *,
        fingerprint_value: str,
        details: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Write each file with its writer (into a temp path), then the manifest last."""
        folder.mkdir(parents=True, exist_ok=True)
        (folder / MANIFEST).unlink(missing_ok=True)
        for leftover in folder.glob(".*.partial"):  # temp files of a run that was killed
            leftover.unlink(missing_ok=True)
        files = {}
        for name, writer in writers.items():
            validate_name(name, "artifact file name")
            target = folder / name
            with atomic_path(target) as tmp:
                writer(tmp)
            files[name] = {"sha256": file_digest(target), "bytes": target.stat().st_size}
        manifest = {
            "fingerprint": fingerprint_value,
            "files": files,
            "created_at": datetime.now(timezone.utc).isoformat(),
            "details": details or {},
        }
        write_json_atomic(manifest, folder / MANIFEST)
        return manifest

    @staticmethod
    def load_manifest(folder: Path, *, verify: bool = True) -> dict[str, Any]:
        """The manifest of a complete artifact; raises ArtifactIntegrityError for partial ones."""
        path = folder / MANIFEST
        if not path.is_file():
            raise ArtifactIntegrityError(
                f"{folder}: no {MANIFEST}; the artifact was never completed (or a run was killed while "
                "writing it). Materialise it again."
            )
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise ArtifactIntegrityError(f"{path}: unreadable manifest ({err.msg})") from None
        if verify:
            for name, expected in manifest.get("files", {}).items():
                target = folder / name
                if not target.is_file() or target.stat().st_size != expected["bytes"] or file_digest(target) != expected["sha256"]:
                    raise ArtifactIntegrityError(
                        f"{target}: does not match its manifest (truncated or overwritten); materialise it again"
                    )
        return manifest

    def current_manifest(self, folder: Path, fingerprint_value: str) -> dict[str, Any] | None:
        """The manifest if the artifact is complete and was made from the same inputs and config."""
        try:
            manifest = self.load_manifest(folder)
        except ArtifactIntegrityError:
            return None
        return manifest if manifest.get("fingerprint") == fingerprint_value else None


@dataclass
class ArtifactResult:
    folder: Path
    manifest: dict[str, Any]
    skipped: bool  # True when an identical artifact already existed

    @property
    def details(self) -> dict[str, Any]:
        return self.manifest["details"]
