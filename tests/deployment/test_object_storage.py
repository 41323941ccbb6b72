"""Artifacts on object storage: a real S3-compatible server (moto) on 127.0.0.1, two workers' mirrors."""

import json

import pytest

from steering_assets.core.artifacts import ArtifactIntegrityError, ArtifactStorageError, ArtifactStore
from steering_assets.core.names import InvalidNameError

pytest.importorskip("s3fs", reason="pip install -e '.[s3]'")


def _worker(bucket, tmp_path, name):
    """One worker's view of the bucket: its own local mirror."""
    return ArtifactStore(f"s3://{bucket}/artifacts", cache_dir=tmp_path / name)


def _objects(bucket):
    import boto3

    listing = boto3.client("s3").list_objects_v2(Bucket=bucket)
    return {o["Key"]: o["Size"] for o in listing.get("Contents", [])}


def test_an_artifact_written_by_one_worker_is_read_by_another(bucket, tmp_path):
    writer, reader = _worker(bucket, tmp_path, "a"), _worker(bucket, tmp_path, "b")
    folder = writer.folder("roles", "persona_dataset", "m", "pirate")
    writer.write_artifact(folder, {"data.bin": lambda p: p.write_bytes(b"x" * 5000), "note.txt": lambda p: p.write_text("hi")},
                          fingerprint_value="v1", details={"rows": 3})
    assert set(_objects(bucket)) == {f"artifacts/roles/persona_dataset/m/pirate/{n}" for n in ("data.bin", "note.txt", "manifest.json")}

    seen = reader.folder("roles", "persona_dataset", "m", "pirate")
    assert seen != folder and seen.is_relative_to(tmp_path / "b")
    manifest = reader.load_manifest(seen)  # verifies every file's SHA-256
    assert manifest["details"] == {"rows": 3} and reader.current_manifest(seen, "v1") is not None
    assert (seen / "data.bin").read_bytes() == b"x" * 5000
    assert reader.location(seen) == f"s3://{bucket}/artifacts/roles/persona_dataset/m/pirate"


def test_a_rewrite_that_dies_leaves_nothing_readable_anywhere(bucket, tmp_path):
    writer, reader = _worker(bucket, tmp_path, "a"), _worker(bucket, tmp_path, "b")
    folder = writer.folder("roles", "steering_vector", "m", "pirate")
    writer.write_artifact(folder, {"a.txt": lambda p: p.write_text("v1"), "b.txt": lambda p: p.write_text("v1")}, fingerprint_value="one")
    assert reader.current_manifest(reader.folder("roles", "steering_vector", "m", "pirate"), "one") is not None

    def fail(path):
        raise OSError("worker lost")

    with pytest.raises(OSError):
        writer.write_artifact(folder, {"a.txt": lambda p: p.write_text("v2"), "b.txt": fail}, fingerprint_value="two")
    # The remote manifest went first, so the reader's mirror (which held v1) is no longer complete either.
    assert "artifacts/roles/steering_vector/m/pirate/manifest.json" not in _objects(bucket)
    seen = reader.folder("roles", "steering_vector", "m", "pirate")
    with pytest.raises(ArtifactIntegrityError, match="never completed"):
        reader.load_manifest(seen)
    assert reader.current_manifest(seen, "one") is None


def test_an_object_that_does_not_match_its_manifest_is_never_read(bucket, tmp_path):
    import boto3

    writer = _worker(bucket, tmp_path, "a")
    folder = writer.folder("x", "y")
    writer.write_artifact(folder, {"data.bin": lambda p: p.write_bytes(b"0123456789")}, fingerprint_value="f")
    # Someone overwrites a file behind the manifest's back (a writer of another version mid-upload).
    boto3.client("s3").put_object(Bucket=bucket, Key="artifacts/x/y/data.bin", Body=b"01234")
    reader = _worker(bucket, tmp_path, "b")
    seen = reader.folder("x", "y")
    with pytest.raises(ArtifactIntegrityError):
        reader.load_manifest(seen)
    assert not (seen / "data.bin").exists() or (seen / "data.bin").read_bytes() != b"01234"


@pytest.mark.parametrize("part", ["..", "../outside", "a/b"])
def test_names_cannot_escape_the_prefix(bucket, tmp_path, part):
    store = _worker(bucket, tmp_path, "a")
    with pytest.raises(InvalidNameError):
        store.folder("roles", part)
    assert _objects(bucket) == {}


def test_a_bucket_that_does_not_exist_is_named(s3_server, tmp_path):
    with pytest.raises(ArtifactStorageError, match="bucket 'no-such-bucket' does not exist at http://127.0.0.1"):
        ArtifactStore("s3://no-such-bucket/artifacts", cache_dir=tmp_path)


@pytest.mark.parametrize("root", ["ftp://host/artifacts", "hdfs://cluster/x", "s4://bucket/x"])
def test_an_unknown_scheme_is_refused_with_the_supported_ones(root, tmp_path):
    with pytest.raises(ArtifactStorageError, match=r"unknown scheme .*s3://bucket/prefix or gs://bucket/prefix"):
        ArtifactStore(root, cache_dir=tmp_path)


def test_file_urls_and_plain_paths_are_the_same_local_store(tmp_path):
    assert ArtifactStore(f"file://{tmp_path}").root == ArtifactStore(tmp_path).root


def test_persona_assets_materialise_onto_s3_and_a_fresh_worker_reuses_them(bucket, tiny_workspace, tmp_path, monkeypatch):
    """The persona family, unchanged, on an s3:// root: a second worker skips the work (same fingerprint)."""
    import dagster as dg

    from steering_assets.definitions import build_definitions

    key = "SmolLM2-135M-Instruct.Q4_1/pirate"
    results = []
    for worker in ("a", "b"):
        monkeypatch.setenv("PERSONA_ARTIFACT_CACHE", str(tmp_path / worker))  # each worker its own mirror
        defs = build_definitions(str(tiny_workspace.data_root), f"s3://{bucket}/artifacts", str(tiny_workspace.model_path),
                                 "unused", "unused", "unused")
        with dg.instance_for_test() as instance:
            instance.add_dynamic_partitions("roles", [key])
            result = defs.resolve_job_def("roles_persona_datasets").execute_in_process(instance=instance, partition_key=key)
            assert result.success
            results.append({e.asset_key.path[-1]: e.materialization.metadata["reused_existing_artifact"].value
                            for e in result.get_asset_materialization_events()})
    assert results == [{"persona_dataset": False, "persona_training_split": False},
                       {"persona_dataset": True, "persona_training_split": True}]
    manifest = json.loads(_get(bucket, "artifacts/roles/persona_training_split/SmolLM2-135M-Instruct.Q4_1/pirate/manifest.json"))
    assert {"train.parquet", "validation.parquet"} <= set(manifest["files"])


def _get(bucket, key):
    import boto3

    return boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
