"""Loading big models: weights go straight to their device(s) with device_map (never a CPU copy moved
afterwards), steering vectors live on the device of their block, dtype and quantisation are configurable."""

import importlib.util
import json

import dagster as dg
import pytest
import torch

from steering_assets.models.hooks import attach_steering, layer_device
from steering_assets.models.loading import load_causal_lm, quantization_config, resolve_device_map
from steering_assets.resources.language_model import LanguageModelResource, ModelSource


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    from tests.chat_tokenizers import build_tokenizer, tiny_qwen3

    tokenizer = build_tokenizer("qwen3", chat_template="")
    folder = tmp_path_factory.mktemp("tiny")
    tiny_qwen3(tokenizer, layers=3).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_device_map_resolution():
    assert resolve_device_map("cpu") == {"": "cpu"}
    assert resolve_device_map("cuda:1") == {"": "cuda:1"}
    for strategy in ("auto", "balanced", "balanced_low_0", "sequential"):
        assert resolve_device_map("auto", strategy) == strategy
    explicit = {"model.embed_tokens": 0, "model.layers.0": 0, "model.layers.1": 1, "model.norm": 1, "lm_head": 1}
    assert resolve_device_map("auto", json.dumps(explicit)) == explicit
    with pytest.raises(ValueError, match=r"device_map 'everywhere' is not one of auto, balanced, balanced_low_0, sequential"):
        resolve_device_map("auto", "everywhere")


def test_weights_load_onto_their_device_and_are_never_moved_afterwards(saved, monkeypatch):
    def no_move(self, *args, **kwargs):
        raise AssertionError("the loaded model was moved with .to(): a full copy was made on one device first")

    monkeypatch.setattr(torch.nn.Module, "to", no_move)
    model = load_causal_lm(str(saved), device="cpu", dtype="float32", local_files_only=True)
    assert all(p.device.type == "cpu" for p in model.parameters()) and not model.training
    # An explicit per-module map (the form "auto" produces over several GPUs) is honoured as given.
    explicit = {"model.embed_tokens": "cpu", "model.layers": "cpu", "model.norm": "cpu", "model.rotary_emb": "cpu", "lm_head": "cpu"}
    sharded = load_causal_lm(str(saved), device="cpu", device_map=json.dumps(explicit), local_files_only=True)
    assert all(p.device.type == "cpu" for p in sharded.parameters())
    assert set(getattr(sharded, "hf_device_map", explicit).values()) == {"cpu"}


def test_dtype_is_configurable_and_steering_follows_it(saved):
    model = load_causal_lm(str(saved), device="cpu", dtype="bfloat16", local_files_only=True)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        before = model(input_ids=ids).logits
        with attach_steering(model, 1, 1, torch.ones(1, 64)) as handle:
            assert handle.steering.vectors.dtype == torch.float32  # trained in float32, added in the model's dtype
            steered = model(input_ids=ids).logits
    assert steered.dtype == torch.bfloat16 and not torch.equal(before, steered)


def test_steering_vectors_live_on_the_device_of_their_block(saved):
    model = load_causal_lm(str(saved), device="cpu", local_files_only=True)
    # A sharded model keeps blocks on different devices; the meta device stands in for a second GPU.
    model.model.layers[2].to("meta")
    assert layer_device(model, 0).type == "cpu" and layer_device(model, 2).type == "meta"
    with attach_steering(model, 2, 3) as handle:
        assert handle.steering.vectors.device.type == "meta"
        offsets = handle.steering.offsets(2, torch.float32, torch.device("meta"))
        assert offsets.device.type == "meta" and offsets.shape == (2, 1, 64)
    with attach_steering(model, 0, 1) as handle:
        assert handle.steering.vectors.device.type == "cpu"


def test_resource_passes_placement_and_quantisation_through(saved, monkeypatch):
    seen = {}

    class Loaded:
        device, dtype = torch.device("cpu"), torch.bfloat16

    def fake_load(name, **kwargs):
        seen.update(kwargs, name=name)
        return Loaded()

    monkeypatch.setattr("steering_assets.resources.language_model.load_causal_lm", fake_load)
    resource = LanguageModelResource(source=ModelSource(model_name_or_path=str(saved)), device_map="auto", dtype="bfloat16",
                                     quantization="4bit")
    resource.setup_for_execution(dg.build_init_resource_context())
    assert (seen["device_map"], seen["dtype"], seen["quantization"]) == ("auto", "bfloat16", "4bit")


@pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is not None, reason="bitsandbytes is installed")
def test_quantisation_without_bitsandbytes_says_how_to_install_it(saved):
    with pytest.raises(ImportError, match=r"quantization='8bit' needs the optional bitsandbytes package.*steering-assets\[quantization\]"):
        load_causal_lm(str(saved), device="cpu", quantization="8bit", local_files_only=True)
    with pytest.raises(ValueError, match=r"quantization '3bit' is not one of 8bit, 4bit"):
        quantization_config("3bit", torch.float32)


@pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is None or not torch.cuda.is_available(),
                    reason="bitsandbytes and a CUDA GPU are needed for quantised loading")
def test_quantised_model_loads_and_steers(saved):
    model = load_causal_lm(str(saved), device="cuda", quantization="8bit", local_files_only=True)
    ids = torch.tensor([[5, 6, 7, 8]], device="cuda")
    with torch.no_grad():
        before = model(input_ids=ids).logits
        with attach_steering(model, 1, 1, torch.ones(1, 64)):
            assert not torch.equal(model(input_ids=ids).logits, before)


def test_loading_settings_come_from_the_environment(monkeypatch):
    from steering_assets.core.settings import Settings
    from steering_assets.resources.defaults import default_language_model

    source = ModelSource(model_name_or_path="some/model")
    for name in ("PERSONA_DEVICE", "PERSONA_DEVICE_MAP", "PERSONA_DTYPE", "PERSONA_QUANTIZATION"):
        monkeypatch.delenv(name, raising=False)
    plain = default_language_model(source, Settings.from_env())
    assert (plain.device, plain.device_map, plain.dtype, plain.quantization) == ("auto", None, "auto", None)
    for name, value in {"PERSONA_DEVICE_MAP": "auto", "PERSONA_DTYPE": "bfloat16", "PERSONA_QUANTIZATION": "4bit"}.items():
        monkeypatch.setenv(name, value)
    sharded = default_language_model(source, Settings.from_env())
    assert (sharded.device_map, sharded.dtype, sharded.quantization) == ("auto", "bfloat16", "4bit")
