import json

import pytest
import torch

from steering_assets.models.errors import VectorShapeError
from steering_assets.steering.config import CONFIG_FILE, INTEROP_FILE, VECTOR_FILE
from steering_assets.steering.vectors import load_into, read_interop, read_vector, write_interop, write_vector


def write_artifact(folder, vector, layer):
    folder.mkdir(parents=True, exist_ok=True)
    write_vector(vector, folder / VECTOR_FILE)
    write_interop(vector, folder / INTEROP_FILE)
    (folder / CONFIG_FILE).write_text(json.dumps({"model": "tiny", "layer": layer}))


def test_vector_round_trips_and_attaches_at_its_layer(tiny_model_factory, tmp_path):
    model = tiny_model_factory()
    vector = torch.randn(model.config.hidden_size)
    write_artifact(tmp_path, vector, layer=3)
    loaded, config = read_vector(tmp_path)
    assert torch.equal(loaded, vector) and config["layer"] == 3
    handle = load_into(tmp_path, model)
    assert handle.layer == 3 and torch.equal(handle.steering.vectors[0].detach(), vector)
    handle.remove()


def test_interop_pt_is_the_layout_persona_steering_code_loads(tmp_path):
    vector = torch.randn(16)
    write_interop(vector, tmp_path / INTEROP_FILE)
    payload = torch.load(tmp_path / INTEROP_FILE, weights_only=True)
    assert set(payload) == {"steering_vector"} and torch.equal(payload["steering_vector"], vector)
    assert torch.equal(read_interop(tmp_path / INTEROP_FILE), vector)


def test_vector_of_another_model_is_refused(tiny_model_factory, tmp_path):
    model = tiny_model_factory()
    write_artifact(tmp_path / "wide", torch.randn(model.config.hidden_size + 8), layer=1)
    with pytest.raises(VectorShapeError, match=rf"shape \({model.config.hidden_size + 8},\), but Qwen3ForCausalLM has hidden size {model.config.hidden_size}"):
        load_into(tmp_path / "wide", model)
    write_artifact(tmp_path / "deep", torch.randn(model.config.hidden_size), layer=30)
    with pytest.raises(VectorShapeError, match=r"layer 30, but the model has 4 layers"):
        load_into(tmp_path / "deep", model)
    assert not hasattr(model, "persona_steering")
