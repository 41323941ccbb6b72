"""Layer L is the output of decoder block L (docs/steering.md#layers), for every reader, the last layer included."""

import numpy as np
import pytest
import torch

from steering_assets.models.hooks import attach_steering, decoder_layers
from steering_assets.models.residual import all_block_outputs, block_outputs
from steering_assets.steering.evaluation import assistant_mean_hidden


@pytest.fixture(scope="module")
def model(demo_workspace):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(demo_workspace.model_path, local_files_only=True).eval()


def hooked_block_outputs(model, **inputs):
    """The reference: a plain forward hook on every block, the whole forward pass run."""
    seen = {}
    handles = [block.register_forward_hook(lambda m, a, out, i=i: seen.__setitem__(i, out[0] if isinstance(out, tuple) else out))
               for i, block in enumerate(decoder_layers(model))]
    try:
        with torch.no_grad():
            outputs = model(**inputs, output_hidden_states=True)
    finally:
        for handle in handles:
            handle.remove()
    return seen, outputs


def test_every_layer_equals_a_hook_on_its_block_the_last_included(model, tokenizer):
    batch = tokenizer(["Arr, matey! Hoist the sails.", "Whisk the eggs."], return_tensors="pt", padding=True)
    reference, outputs = hooked_block_outputs(model, **batch)
    with torch.no_grad():
        stacked = all_block_outputs(model, **batch)
    n = len(decoder_layers(model))
    assert stacked.shape[0] == n
    for layer in range(n):
        assert torch.equal(stacked[layer], reference[layer]), layer
    # output_hidden_states ends with the final norm's output, which is not block n-1's output.
    assert not torch.allclose(outputs.hidden_states[-1], reference[n - 1], atol=1e-3)


def test_stopping_after_the_wanted_block_gives_the_same_states(model, tokenizer):
    batch = tokenizer(["The footprints in the mud."], return_tensors="pt")
    reference, _ = hooked_block_outputs(model, **batch)
    with torch.no_grad():
        early = block_outputs(model, [1], **batch)
    assert list(early) == [1] and torch.equal(early[1], reference[1])


def test_captured_states_include_the_steering(model, tokenizer):
    batch = tokenizer(["Arr, matey!"], return_tensors="pt")
    vector = torch.randn(1, model.config.hidden_size)
    with torch.no_grad():
        plain = block_outputs(model, [3], **batch)[3]
        with attach_steering(model, 3, 1, vector):
            steered = block_outputs(model, [3], **batch)[3]
    assert torch.allclose(steered - plain, vector.expand_as(plain[0]), atol=1e-5)


def test_the_activation_vector_reads_the_last_block_not_the_final_norm(model, tokenizer, demo_conversations):
    conversations = demo_conversations("pirate", 3)
    last = len(decoder_layers(model)) - 1
    means = assistant_mean_hidden(model, tokenizer, conversations, last, batch_size=2)
    for row, conversation in enumerate(conversations):
        out = tokenizer.apply_chat_template(conversation, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
        reference, _ = hooked_block_outputs(model, input_ids=torch.tensor([out["input_ids"]]))
        mask = torch.tensor(out["assistant_masks"], dtype=torch.bool)
        expected = reference[last][0][mask].mean(0).numpy()
        assert np.allclose(means[row], expected, atol=1e-4)
