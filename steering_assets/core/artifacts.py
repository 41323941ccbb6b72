"""Artifact storage: one root owns every path, every write is atomic, every artifact has a manifest.

An artifact is a folder of files plus ``manifest.json``. The manifest is removed
before new files are written and written last, listing each file's SHA-256, so a
run killed half-way leaves a folder that ``load_manifest`` refuses rather than a
truncated artifact read as valid. The manifest also records the fingerprint
(config and input hashes) that made the artifact, which lets a re-run skip work
whose inputs and config are unchanged.

The root is a folder (a local disk or a shared filesystem every worker mounts: the
default) or an object-store URL, ``s3://bucket/prefix`` or ``gs://bucket/prefix``,
reached through fsspec and universal-pathlib. With a URL, every worker keeps a local
mirror of the artifacts it touches and the object store is the truth: ``folder()``
brings the mirror to the store's last committed version of that artifact (or removes
the mirror's manifest when the store has none), and ``write_artifact`` deletes the
remote manifest first, uploads each file (an object PUT is all-or-nothing), and
uploads the manifest last. So the manifest is the commit on both sides, a reader
only ever sees files whose SHA-256 matches a committed manifest, and the code that
reads artifacts works on local paths unchanged. Files written into a store folder
outside ``write_artifact`` (judgment caches, training checkpoints) stay in the
worker's mirror.
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
from typing import Any, Callable, Iterator, Mapping

from steering_assets.core.errors import InputError
from steering_assets.core.names import validate_name

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


class _StaleObject(Exception):
    """A downloaded object does not match the manifest that names it."""


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


# URL schemes the store accepts; "" is a plain path.
LOCAL_SCHEMES = ("", "file")
OBJECT_STORE_SCHEMES = {"s3": "s3fs", "gs": "gcsfs", "gcs": "gcsfs"}


class ArtifactStorageError(InputError, ValueError):
    """The artifact root cannot be used (unknown URL scheme, missing bucket, missing fsspec backend)."""


def split_root(root: Path | str) -> tuple[str, str]:
    """(scheme, rest) of an artifact root; a plain path has the scheme ""."""
    text = str(root)
    if "://" not in text:
        return "", text
    scheme, rest = text.split("://", 1)
    return scheme.lower(), rest


def default_cache_dir(url: str) -> Path:
    """Where a worker mirrors the artifacts of ``url`` (PERSONA_ARTIFACT_CACHE, else ~/.cache/steering-assets)."""
    from steering_assets.core.settings import read_setting

    base = read_setting("artifact_cache") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "steering-assets", "artifacts"
    )
    return Path(base) / hashlib.sha256(url.encode("utf-8")).hexdigest()[:16]


_CHECKED_BUCKETS: set[str] = set()


class _ObjectStore:
    """The remote side of an ArtifactStore whose root is an object-store URL."""

    def __init__(self, url: str, storage_options: Mapping[str, Any] | None):
        scheme, rest = split_root(url)
        try:
            from upath import UPath

            self.root = UPath(url.rstrip("/"), **dict(storage_options or {}))
            self.fs = self.root.fs
        except ImportError as err:
            raise ArtifactStorageError(
                f"artifact root {url}: {scheme}:// needs the {OBJECT_STORE_SCHEMES[scheme]} package "
                f"({err}); install the extra: pip install -e '.[{'s3' if scheme == 's3' else 'gcs'}]'"
            ) from None
        self.url = url.rstrip("/")
        self.bucket = rest.split("/", 1)[0]
        if not self.bucket:
            raise ArtifactStorageError(f"artifact root {url}: no bucket name (expected {scheme}://bucket/prefix)")
        self._check_bucket()

    def _check_bucket(self) -> None:
        if self.url in _CHECKED_BUCKETS:
            return
        try:
            exists = self.fs.exists(self.bucket)
        except PermissionError:
            raise ArtifactStorageError(
                f"artifact root {self.url}: these credentials may not access bucket {self.bucket!r}"
            ) from None
        if not exists:
            endpoint = os.environ.get("AWS_ENDPOINT_URL") or "the provider's default endpoint"
            raise ArtifactStorageError(
                f"artifact root {self.url}: bucket {self.bucket!r} does not exist at {endpoint} (or these credentials "
                "cannot see it); create the bucket or fix PERSONA_ARTIFACT_ROOT"
            )
        _CHECKED_BUCKETS.add(self.url)

    def path(self, relative: Path) -> str:
        return (self.root.joinpath(*relative.parts)).path

    def read_manifest(self, relative: Path) -> bytes | None:
        try:
            return self.fs.cat_file(self.path(relative / MANIFEST))
        except FileNotFoundError:
            return None

    def remove_manifest(self, relative: Path) -> None:
        try:
            self.fs.rm_file(self.path(relative / MANIFEST))
        except FileNotFoundError:
            pass

    def upload(self, local: Path, relative: Path) -> None:
        self.fs.put_file(str(local), self.path(relative))

    def download(self, relative: Path, local: Path) -> None:
        self.fs.get_file(self.path(relative), str(local))


class ArtifactStore:
    """Resolves artifact paths under ``root`` and writes artifacts atomically.

    ``root`` is a folder or an ``s3://`` / ``gs://`` URL (see the module docstring);
    ``cache_dir`` is the local mirror of a URL root and ``storage_options`` go to fsspec
    (credentials and endpoints otherwise come from the provider's usual variables, e.g.
    AWS_ENDPOINT_URL). Raises ArtifactStorageError for an unknown scheme or a bucket that
    does not exist.
    """

    def __init__(self, root: Path | str, *, cache_dir: Path | str | None = None,
                 storage_options: Mapping[str, Any] | None = None):
        scheme, rest = split_root(root)
        self.remote: _ObjectStore | None = None
        if scheme in LOCAL_SCHEMES:
            self.url = None
            self.root = Path(rest).expanduser().resolve()
        elif scheme in OBJECT_STORE_SCHEMES:
            self.remote = _ObjectStore(str(root), storage_options)
            self.url = self.remote.url
            self.root = Path(cache_dir or default_cache_dir(self.url)).expanduser().resolve()
        else:
            raise ArtifactStorageError(
                f"artifact root {root}: unknown scheme {scheme + '://'!r}; use a folder (a local or shared filesystem), "
                "s3://bucket/prefix or gs://bucket/prefix"
            )

    def folder(self, *parts: str) -> Path:
        """``root/part/part/...`` where every part must be a safe single name component.

        With an object-store root this is the local mirror, brought to the store's last
        committed version of the artifact first.
        """
        for part in parts:
            validate_name(part, "artifact path component")
        path = self.root.joinpath(*parts).resolve()
        if self.root not in path.parents:
            raise ValueError(f"artifact path {path} escapes the artifact root {self.root}")
        if self.remote is not None:
            self._pull(path)
        return path

    def location(self, folder: Path) -> str:
        """Where an artifact folder really lives: its URL for an object-store root, else the path."""
        if self.remote is None:
            return str(folder)
        return f"{self.url}/{folder.relative_to(self.root).as_posix()}"

    def _pull(self, folder: Path) -> None:
        """Make the mirror's ``folder`` the remote's committed artifact, or mark it incomplete."""
        relative = folder.relative_to(self.root)
        remote_manifest = self.remote.read_manifest(relative)
        local_manifest = folder / MANIFEST
        if remote_manifest is None:
            local_manifest.unlink(missing_ok=True)  # not committed remotely: not complete here either
            return
        if local_manifest.is_file() and local_manifest.read_bytes() == remote_manifest:
            return
        try:
            manifest = json.loads(remote_manifest)
        except json.JSONDecodeError:
            local_manifest.unlink(missing_ok=True)
            return
        folder.mkdir(parents=True, exist_ok=True)
        local_manifest.unlink(missing_ok=True)
        for name, expected in manifest.get("files", {}).items():
            validate_name(name, "artifact file name")
            target = folder / name
            if target.is_file() and target.stat().st_size == expected["bytes"] and file_digest(target) == expected["sha256"]:
                continue
            try:
                with atomic_path(target) as tmp:
                    self.remote.download(relative / name, tmp)
                    if file_digest(tmp) != expected["sha256"]:
                        # Being rewritten right now: keep the old local file, leave the artifact incomplete.
                        raise _StaleObject()
            except (_StaleObject, FileNotFoundError):
                return
        with atomic_path(local_manifest) as tmp:
            tmp.write_bytes(remote_manifest)

    def write_artifact(
        self,
        folder: Path,
        writers: dict[str, Callable[[Path], None]],
        *,
        fingerprint_value: str,
        details: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Write each file with its writer (into a temp path), then the manifest last.

        With an object-store root the remote manifest is deleted before anything else and
        uploaded after every file, so the remote commit is as atomic as the local one.
        """
        folder.mkdir(parents=True, exist_ok=True)
        relative = folder.relative_to(self.root) if self.remote is not None else None
        if self.remote is not None:
            self.remote.remove_manifest(relative)
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
        if self.remote is not None:
            for name in files:
                self.remote.upload(folder / name, relative / name)
        write_json_atomic(manifest, folder / MANIFEST)
        if self.remote is not None:
            self.remote.upload(folder / MANIFEST, relative / MANIFEST)
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
