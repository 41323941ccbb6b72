import signal
import subprocess
import sys
import textwrap

import pytest

from steering_assets.core.artifacts import ArtifactIntegrityError, ArtifactStore, atomic_path
from steering_assets.core.names import InvalidNameError


def test_atomic_path_leaves_nothing_when_the_writer_fails(tmp_path):
    target = tmp_path / "out.parquet"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("partial")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_failure_while_writing_invalidates_the_previous_artifact(tmp_path):
    store = ArtifactStore(tmp_path)
    folder = store.folder("roles", "persona_dataset", "m", "pirate")
    store.write_artifact(folder, {"a.txt": lambda p: p.write_text("v1"), "b.txt": lambda p: p.write_text("v1")}, fingerprint_value="one")
    assert store.current_manifest(folder, "one") is not None

    def fail(path):
        raise OSError("disk full")

    with pytest.raises(OSError):
        store.write_artifact(folder, {"a.txt": lambda p: p.write_text("v2"), "b.txt": fail}, fingerprint_value="two")
    # a.txt is already v2 while b.txt is v1: the folder must not read as either version.
    with pytest.raises(ArtifactIntegrityError, match="never completed"):
        store.load_manifest(folder)
    assert store.current_manifest(folder, "one") is None


def test_truncated_file_is_detected(tmp_path):
    store = ArtifactStore(tmp_path)
    folder = store.folder("x")
    store.write_artifact(folder, {"data.bin": lambda p: p.write_bytes(b"0123456789")}, fingerprint_value="f")
    (folder / "data.bin").write_bytes(b"01234")
    with pytest.raises(ArtifactIntegrityError, match="does not match its manifest"):
        store.load_manifest(folder)


def test_process_killed_mid_write_leaves_no_valid_artifact(tmp_path):
    """A real SIGKILL while a file is being written: no truncated file is ever read as valid."""
    script = textwrap.dedent(
        f"""
        import os, signal
        from steering_assets.core.artifacts import ArtifactStore
        store = ArtifactStore({str(tmp_path)!r})
        folder = store.folder("roles", "persona_training_split", "m", "pirate")
        store.write_artifact(folder, {{"train.parquet": lambda p: p.write_bytes(b"old" * 1000)}}, fingerprint_value="old")
        def killed_half_way(path):
            with open(path, "wb") as handle:
                handle.write(b"new" * 500)
                handle.flush()
                os.kill(os.getpid(), signal.SIGKILL)
        store.write_artifact(folder, {{"train.parquet": killed_half_way}}, fingerprint_value="new")
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True)
    assert proc.returncode == -signal.SIGKILL
    store = ArtifactStore(tmp_path)
    folder = store.folder("roles", "persona_training_split", "m", "pirate")
    with pytest.raises(ArtifactIntegrityError):
        store.load_manifest(folder)
    # The final name still holds the complete old bytes; the partial write is only in a temp file.
    assert (folder / "train.parquet").read_bytes() == b"old" * 1000
    assert [p.name for p in folder.iterdir() if p.name.endswith(".partial")]
    # The next write cleans the killed run's temp file up.
    store.write_artifact(folder, {"train.parquet": lambda p: p.write_bytes(b"ok")}, fingerprint_value="again")
    assert sorted(p.name for p in folder.iterdir()) == ["manifest.json", "train.parquet"]


@pytest.mark.parametrize("part", ["..", "../outside", "/etc", "a/b"])
def test_store_never_resolves_outside_its_root(tmp_path, part):
    store = ArtifactStore(tmp_path / "root")
    with pytest.raises(InvalidNameError):
        store.folder("roles", part)
    assert not (tmp_path / "outside").exists()
