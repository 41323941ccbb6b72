import json

import numpy as np
import pytest

from steering_assets.models.sae import SAEFormatError, load_sae, load_sae_set, train_small_sae


def sae_arrays(d_model=8, d_sae=16, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "W_enc": rng.normal(size=(d_model, d_sae)).astype(np.float32),
        "W_dec": rng.normal(size=(d_sae, d_model)).astype(np.float32),
        "b_enc": rng.normal(size=d_sae).astype(np.float32),
        "b_dec": rng.normal(size=d_model).astype(np.float32),
        "threshold": np.abs(rng.normal(size=d_sae)).astype(np.float32),
    }


def test_jumprelu_encoding_matches_the_formula(tmp_path):
    arrays = sae_arrays()
    np.savez(tmp_path / "params.npz", **arrays)
    sae = load_sae(tmp_path / "params.npz", layer=2, average_l0=5, d_model=8)
    x = np.random.default_rng(1).normal(size=(4, 8)).astype(np.float32)
    pre = x @ arrays["W_enc"] + arrays["b_enc"]
    assert np.allclose(sae.encode(x), (pre > arrays["threshold"]) * np.maximum(pre, 0))
    import torch

    assert np.allclose(sae.encode(torch.tensor(x)).numpy(), sae.encode(x), atol=1e-5)


def test_missing_keys_wrong_shapes_and_pickle_are_refused(tmp_path):
    arrays = sae_arrays()
    np.savez(tmp_path / "missing.npz", **{k: v for k, v in arrays.items() if k != "threshold"})
    with pytest.raises(SAEFormatError, match=r"missing.npz: missing \['threshold'\]"):
        load_sae(tmp_path / "missing.npz", 0, 1)
    np.savez(tmp_path / "shape.npz", **{**arrays, "b_dec": np.zeros(7, dtype=np.float32)})
    with pytest.raises(SAEFormatError, match=r"b_dec has shape \(7,\), expected \(8,\)"):
        load_sae(tmp_path / "shape.npz", 0, 1)
    np.savez(tmp_path / "pickled.npz", **{**arrays, "threshold": np.array([{"x": 1}], dtype=object)})
    with pytest.raises(SAEFormatError, match=r"pickled.npz: cannot be read without pickle"):
        load_sae(tmp_path / "pickled.npz", 0, 1)
    np.savez(tmp_path / "ok.npz", **arrays)
    with pytest.raises(SAEFormatError, match=r"SAE d_model is 8 but the model's hidden size is 16"):
        load_sae(tmp_path / "ok.npz", 0, 1, d_model=16)


def test_sae_list_resolves_paths_and_checks_entries(tmp_path):
    for layer in (1, 3):
        (tmp_path / f"layer_{layer}").mkdir()
        np.savez(tmp_path / f"layer_{layer}" / "params.npz", **sae_arrays(seed=layer))
    config = tmp_path / "saes.json"
    config.write_text(json.dumps([{"layer": 3, "average_l0": 20, "path": "layer_3/params.npz"},
                                  {"layer": 1, "average_l0": 11, "path": "layer_1/params.npz"}]))
    saes = load_sae_set(config, d_model=8, n_layers=4)
    assert list(saes) == [1, 3] and saes[3].average_l0 == 20
    config.write_text(json.dumps([{"layer": 5, "average_l0": 1, "path": "layer_1/params.npz"}]))
    with pytest.raises(SAEFormatError, match=r"entry 0 has layer 5, expected a layer index \(the model has 4 layers\)"):
        load_sae_set(config, n_layers=4)
    config.write_text(json.dumps([{"layer": 1, "path": "x"}]))
    with pytest.raises(SAEFormatError, match=r"entry 0 needs keys 'layer', 'average_l0' and 'path'"):
        load_sae_set(config)


def test_trained_sae_round_trips_in_the_params_layout(tmp_path):
    rng = np.random.default_rng(0)
    activations = rng.normal(size=(400, 8)).astype(np.float32) @ rng.normal(size=(8, 8)).astype(np.float32)
    sae = train_small_sae(activations, d_sae=32, steps=150, layer=2)
    sae.save(tmp_path / "params.npz")
    loaded = load_sae(tmp_path / "params.npz", 2, sae.average_l0, d_model=8)
    assert np.allclose(loaded.encode(activations), sae.encode(activations), atol=1e-5)
    assert 0 < sae.average_l0 < 32
    reconstruction = loaded.decode(loaded.encode(activations))
    baseline = ((activations - activations.mean(0)) ** 2).sum(-1).mean()
    assert ((reconstruction - activations) ** 2).sum(-1).mean() < baseline  # it learned something
