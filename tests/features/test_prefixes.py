import numpy as np
import pytest

from steering_assets.features.prefixes import (
    EmptySentenceError,
    NonFiniteHiddenStatesError,
    SentenceFeatures,
    prefix_hidden_states,
    prefix_texts,
    sentence_features,
    tokenize_sentences,
)
from steering_assets.models.sae import train_small_sae
from tests.reference import prefix_hidden_states_one_by_one

SENTENCES = [
    "Arr, matey! Hoist the sails.",
    "Whisk the eggs, fold in the butter, and never rush the oven.",
    "Ok.",
    "The footprints in the mud told me more than any confession.",
]


@pytest.fixture(scope="module")
def model(demo_workspace):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(demo_workspace.model_path, local_files_only=True).eval()


def test_one_batched_pass_equals_a_forward_per_prefix(model, tokenizer):
    ids = tokenize_sentences(tokenizer, SENTENCES)
    assert len({x.n_fragments for x in ids}) > 1  # different lengths, so padding is exercised
    batched = prefix_hidden_states(model, ids, batch_size=3)
    reference = prefix_hidden_states_one_by_one(model, ids)
    for one, other, tokens in zip(batched, reference, ids):
        assert one.shape == (model.config.num_hidden_layers, tokens.n_fragments, model.config.hidden_size)
        assert np.abs(one - other).max() < 1e-4


def test_sentence_that_tokenizes_to_nothing_is_named(tokenizer):
    with pytest.raises(EmptySentenceError, match=r"sentence 1 \(''\) tokenizes to nothing"):
        tokenize_sentences(tokenizer, ["fine", ""])


def test_nan_hidden_states_are_reported_not_used(model, tokenizer):
    ids = tokenize_sentences(tokenizer, SENTENCES[:2])
    layer = model.model.layers[1]
    handle = layer.register_forward_hook(lambda module, inputs, output: output * float("nan"))
    try:
        with pytest.raises(NonFiniteHiddenStatesError, match=r"sentence 0: \d+ non-finite values"):
            prefix_hidden_states(model, ids)
    finally:
        handle.remove()


def test_feature_npz_has_the_documented_keys_shapes_and_dtypes(model, tokenizer, tmp_path):
    class Encoder:
        def encode(self, texts):
            return np.ones((len(texts), 6), dtype=np.float32) * np.arange(len(texts))[:, None]

    ids = tokenize_sentences(tokenizer, SENTENCES)
    states = np.concatenate([h[1] for h in prefix_hidden_states(model, ids)])
    saes = {1: train_small_sae(states, d_sae=32, steps=20, layer=1), 3: train_small_sae(states, d_sae=32, steps=20, layer=3)}
    features = sentence_features(model, tokenizer, Encoder(), saes, SENTENCES[:2], [3, 0], first_index=10)
    path = tmp_path / "sentence_10.npz"
    features[0].save(path)
    with np.load(path, allow_pickle=False) as data:
        assert set(data.files) == {"embeddings", "hidden_states", "activations", "is_final_token", "concept_strength_label",
                                   "sentence", "sentence_index", "layers", "average_l0s", "hidden_state_layers"}
    loaded = SentenceFeatures.load(path)
    n = ids[0].n_fragments
    assert loaded.embeddings.shape == (n, 6) and loaded.embeddings.dtype == np.float32
    assert loaded.hidden_states.shape == (4, n, model.config.hidden_size) and loaded.hidden_states.dtype == np.float32
    assert loaded.activations.shape == (2, n, 32)
    assert loaded.is_final_token.tolist() == [False] * (n - 1) + [True]
    assert (loaded.concept_strength_label, loaded.sentence, loaded.sentence_index) == (3, SENTENCES[0], 10)
    assert loaded.layers.tolist() == [1, 3] and loaded.average_l0s.shape == (2,)
    assert loaded.hidden_state_layers.tolist() == [0, 1, 2, 3]  # hidden rows are looked up by these ids
    assert np.allclose(loaded.activations[0], saes[1].encode(features[0].hidden_states[1]))


def test_every_layer_of_every_prefix_equals_a_hook_on_its_block(model, tokenizer):
    """Layer L is block L's output, the last layer included (not the final norm's output)."""
    import torch

    ids = tokenize_sentences(tokenizer, SENTENCES[:2])
    batched = prefix_hidden_states(model, ids, batch_size=2)
    blocks = model.model.layers
    for item, states in zip(ids, batched):
        seen = {}
        handles = [b.register_forward_hook(lambda m, a, out, i=i: seen.__setitem__(i, out)) for i, b in enumerate(blocks)]
        try:
            with torch.no_grad():
                model(input_ids=torch.tensor([item.ids]))
        finally:
            for handle in handles:
                handle.remove()
        for layer in range(len(blocks)):
            assert np.abs(states[layer] - seen[layer][0].numpy()).max() < 1e-4, layer


def test_prefixes_start_after_bos_with_a_bos_adding_tokenizer():
    """Gemma and Llama tokenizers add BOS: it is context for every fragment, never a fragment alone."""
    import torch

    from tests.chat_tokenizers import build_tokenizer, tiny_qwen3

    tokenizer = build_tokenizer("gemma2", chat_template="")
    model = tiny_qwen3(tokenizer, layers=2)
    sentences = ["Arr, matey!", "Whisk the eggs, fold in the butter."]
    items = tokenize_sentences(tokenizer, sentences)
    for sentence, item in zip(sentences, items):
        own = tokenizer(sentence, add_special_tokens=False)["input_ids"]
        assert item.ids == [tokenizer.bos_token_id] + own and item.start == 1 and item.n_fragments == len(own)
        texts = prefix_texts(tokenizer, item)
        assert texts[0] == tokenizer.decode(own[:1]) and texts[-1] == sentence  # no empty BOS-only fragment
    states = prefix_hidden_states(model, items, batch_size=2)
    reference = prefix_hidden_states_one_by_one(model, items)
    for item, batched, single in zip(items, states, reference):
        assert batched.shape == (2, item.n_fragments, 64) and np.abs(batched - single).max() < 1e-4
        # Fragment 0 is BOS + the first token, read at the first token's position.
        with torch.no_grad():
            seen = {}
            handle = model.model.layers[1].register_forward_hook(lambda m, a, out: seen.__setitem__("h", out))
            model(input_ids=torch.tensor([item.ids[:2]]))
            handle.remove()
        assert np.abs(batched[1, 0] - seen["h"][0, -1].numpy()).max() < 1e-5
