"""Exports other tools load (llama.cpp GGUF control vectors, lm-eval's steered model, assistant-axis layer
stacks) and imports of published vectors, each checked against the tool's own layer numbering."""

import numpy as np
import pytest
import torch

from steering_assets.models.errors import VectorShapeError
from steering_assets.models.hooks import attach_steering, decoder_layers
from steering_assets.steering.export import (
    GGUF_FILE,
    LAYER_STACK_FILE,
    LM_EVAL_FILE,
    ExportLayerError,
    ModelShape,
    export_writers,
    import_gguf_control_vector,
    import_layer_stack,
    import_lm_eval_steer,
    read_gguf_control_vector,
    write_gguf_control_vector,
    write_layer_stack,
    write_lm_eval_steer,
)


@pytest.fixture(scope="module")
def model(demo_workspace):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(demo_workspace.model_path, local_files_only=True).eval()


@pytest.fixture
def vector(model):
    torch.manual_seed(1)
    return torch.randn(model.config.hidden_size)


def logits(model, tokenizer):
    with torch.no_grad():
        return model(**tokenizer(["Arr, matey! Hoist the sails."], return_tensors="pt")).logits


def llama_cpp_block_tensors(directions: dict[int, np.ndarray], n_layers: int, n_embd: int) -> dict[int, np.ndarray]:
    """llama.cpp's own arithmetic, restated: common_control_vector_load_one writes direction.N at buffer offset
    (N - 1) * n_embd; llama_adapter_cvec::apply fills block il (1 <= il < n_layer) from offset (il - 1) * n_embd;
    build_cvec then adds tensors[il] to the output of block il."""
    buffer = np.zeros(n_embd * max(directions), dtype=np.float32)
    for n, values in directions.items():
        buffer[(n - 1) * n_embd : n * n_embd] += values
    blocks = {}
    for il in range(1, n_layers):
        offset = (il - 1) * n_embd
        if offset + n_embd <= len(buffer):
            blocks[il] = buffer[offset : offset + n_embd]
    return blocks


def test_gguf_control_vector_round_trips_and_lands_on_our_layer(model, tokenizer, vector, tmp_path):
    import gguf

    shape = ModelShape.of(model)
    path = tmp_path / GGUF_FILE
    write_gguf_control_vector(vector, 2, shape, path)
    reader = gguf.GGUFReader(str(path))
    assert reader.fields["general.architecture"].contents() == "controlvector"
    assert reader.fields["controlvector.model_hint"].contents() == "qwen3"
    [tensor] = reader.tensors
    assert tensor.name == "direction.2" and tensor.tensor_type == gguf.GGMLQuantizationType.F32
    assert list(tensor.shape) == [model.config.hidden_size]
    directions = read_gguf_control_vector(path)
    assert np.array_equal(directions[2], vector.numpy())
    # Under llama.cpp's numbering the direction is added to block 2's output: our layer 2, exactly.
    blocks = llama_cpp_block_tensors(directions, shape.n_layers, shape.hidden_size)
    assert np.array_equal(blocks[2], vector.numpy()) and not blocks[1].any() and 3 not in blocks
    # Imported back, it steers the model exactly as the original vector does.
    imported = import_gguf_control_vector(path, model)
    assert imported.layer == 2
    with attach_steering(model, 2, 1, vector[None]):
        expected = logits(model, tokenizer)
    with imported.attach(model):
        assert torch.equal(logits(model, tokenizer), expected)


def test_llama_cpp_cannot_steer_block_zero(model, vector, tmp_path):
    shape = ModelShape.of(model)
    with pytest.raises(ExportLayerError, match=r"llama.cpp cannot steer block 0: its control vectors start at direction.1"):
        write_gguf_control_vector(vector, 0, shape, tmp_path / "x.gguf")
    writers, skipped = export_writers(vector, 0, shape)
    assert GGUF_FILE not in writers and "llama.cpp cannot steer block 0" in skipped[GGUF_FILE]
    assert {LM_EVAL_FILE, LAYER_STACK_FILE} <= set(writers)
    with pytest.raises(ExportLayerError, match=r"layer 4 is outside the model \(4 decoder blocks, 0-3\)"):
        write_lm_eval_steer(vector, 4, shape, tmp_path / "x.pt")


def _gguf(path, directions: dict[int, np.ndarray], layer_count=None):
    import gguf

    writer = gguf.GGUFWriter(str(path), "controlvector")
    writer.add_int32("controlvector.layer_count", layer_count or len(directions))
    for n, values in directions.items():
        writer.add_tensor(f"direction.{n}", values.astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_gguf_vectors_that_do_not_fit_the_model_are_refused(model, tmp_path):
    d = model.config.hidden_size
    wrong_size = _gguf(tmp_path / "size.gguf", {1: np.ones(d + 8)})
    with pytest.raises(VectorShapeError, match=rf"control vector has n_embd {d + 8}, but the model has hidden size {d}"):
        import_gguf_control_vector(wrong_size, model)
    too_deep = _gguf(tmp_path / "layers.gguf", {n: np.ones(d) for n in range(1, 32)})  # made for a 32-layer model
    with pytest.raises(VectorShapeError, match=r"control vector has directions \[4, .*31\], but the model has 4 decoder blocks"):
        import_gguf_control_vector(too_deep, model, layer=2)
    declared = _gguf(tmp_path / "count.gguf", {1: np.ones(d)}, layer_count=31)
    with pytest.raises(VectorShapeError, match=r"layer_count 31, but the model has 4 decoder blocks"):
        import_gguf_control_vector(declared, model)
    several = _gguf(tmp_path / "several.gguf", {1: np.ones(d), 2: np.ones(d)})
    with pytest.raises(VectorShapeError, match=r"holds directions for layers \[1, 2\]; pick one with layer="):
        import_gguf_control_vector(several, model)
    assert import_gguf_control_vector(several, model, layer=2).layer == 2


def test_lm_eval_steer_file_steers_the_hookpoint_of_our_layer(model, tokenizer, vector, tmp_path):
    shape = ModelShape.of(model)
    path = tmp_path / LM_EVAL_FILE
    write_lm_eval_steer(vector, 1, shape, path, coefficient=3.0)
    payload = torch.load(path, weights_only=True)
    assert list(payload) == ["layers.1"]
    entry = payload["layers.1"]
    assert entry["action"] == "add" and entry["steering_coefficient"] == 3.0 and entry["bias"] is None
    assert entry["steering_vector"].shape == (model.config.hidden_size,) and entry["steering_vector"].dtype == torch.float32
    # lm-eval's steered model: resolve the hookpoint among model.base_model's modules, add coefficient * vector
    # to that module's output with a forward hook.
    modules = dict(model.base_model.named_modules())
    vec, coefficient = entry["steering_vector"], entry["steering_coefficient"]
    handle = modules["layers.1"].register_forward_hook(
        lambda m, a, out: (out[0] + coefficient * vec, *out[1:]) if isinstance(out, tuple) else out + coefficient * vec)
    try:
        lm_eval_logits = logits(model, tokenizer)
    finally:
        handle.remove()
    with attach_steering(model, 1, 1, vector[None]) as ours:
        ours.steering.coefficient = 3.0
        assert torch.allclose(logits(model, tokenizer), lm_eval_logits, atol=1e-5)
    imported = import_lm_eval_steer(path, model)
    assert imported.layer == 1 and torch.allclose(imported.vector, 3.0 * vector)


def test_layer_stack_rows_are_block_outputs_and_both_conventions_import(model, vector, tmp_path):
    shape = ModelShape.of(model)
    n, d = len(decoder_layers(model)), model.config.hidden_size
    path = tmp_path / LAYER_STACK_FILE
    write_layer_stack(vector, 3, shape, path)
    stack = torch.load(path, weights_only=True)
    assert stack.shape == (n, d) and torch.equal(stack[3], vector) and not stack[:3].any()
    assert torch.equal(import_layer_stack(path, model, 3).vector, vector)
    # The assistant-axis pipeline saves {"axis": [n_layers, d], ...}; persona-vectors saves [n_layers + 1, d]
    # from output_hidden_states (row 0 = embeddings, row L + 1 = block L).
    torch.save({"axis": stack, "n_roles": 3}, tmp_path / "axis.pt")
    assert torch.equal(import_layer_stack(tmp_path / "axis.pt", model, 3).vector, vector)
    persona_vectors = torch.cat([torch.zeros(1, d), stack])
    torch.save(persona_vectors, tmp_path / "trait_response_avg_diff.pt")
    imported = import_layer_stack(tmp_path / "trait_response_avg_diff.pt", model, 3, convention="persona-vectors")
    assert imported.layer == 3 and torch.equal(imported.vector, vector)
    with pytest.raises(VectorShapeError, match=rf"layer stack is \({n + 1}, {d}\), but a assistant-axis stack for this model is "
                                               rf"\({n}, {d}\).*its row count fits convention='persona-vectors'"):
        import_layer_stack(tmp_path / "trait_response_avg_diff.pt", model, 3)
    torch.save(torch.zeros(n, d + 2), tmp_path / "wide.pt")
    with pytest.raises(VectorShapeError, match=rf"layer stack is \({n}, {d + 2}\)"):
        import_layer_stack(tmp_path / "wide.pt", model, 1)


def test_an_imported_vector_saves_as_a_vector_folder_that_load_into_reads(model, tokenizer, vector, tmp_path):
    from steering_assets.steering.vectors import load_into

    write_layer_stack(vector, 2, ModelShape.of(model), tmp_path / "stack.pt")
    import_layer_stack(tmp_path / "stack.pt", model, 2).save(tmp_path / "imported", "demo")
    with load_into(tmp_path / "imported", model) as handle:
        assert handle.layer == 2
        steered = logits(model, tokenizer)
    with attach_steering(model, 2, 1, vector[None]):
        assert torch.equal(logits(model, tokenizer), steered)
