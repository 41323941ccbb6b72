"""Every common architecture, as a tiny random model built locally from its config (no downloads), saved with
``save_pretrained`` and loaded by path through the platform's loader: steering, training, activation vectors,
per-prefix hidden states and batched generation all work on it and agree with their references."""

import numpy as np
import pytest
import torch

from steering_assets.features.prefixes import prefix_hidden_states, tokenize_sentences
from steering_assets.judge.local import complete_scenarios
from steering_assets.models.assistant_mask import rendered_reply_mask
from steering_assets.models.hooks import DecoderLayersNotFoundError, attach_steering, decoder_layers
from steering_assets.models.loading import load_causal_lm
from steering_assets.steering.config import SteeringTrainingConfig
from steering_assets.steering.evaluation import assistant_mean_hidden
from steering_assets.steering.training import PersonaData, train_steering_vectors

SIZES = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 3, "num_attention_heads": 4, "max_position_embeddings": 256}
ARCHITECTURES = ["llama", "mistral", "qwen2", "qwen3", "gemma2", "gemma3_text", "gemma3", "phi3", "olmo2", "gpt2", "gpt_neox"]
CONVERSATIONS = [
    [{"role": "user", "content": "How are you?"}, {"role": "assistant", "content": "Arr, matey! Hoist the sails."}],
    [{"role": "user", "content": "Tell me about the sea."}, {"role": "assistant", "content": "Whisk the eggs, fold in the butter."}],
    [{"role": "user", "content": "What do you think about a lost key?"}, {"role": "assistant", "content": "The footprints in the mud told me."}],
    [{"role": "user", "content": "Any advice?"}, {"role": "assistant", "content": "Never rush the oven."}],
]


def make_config(name: str, tokenizer):
    import transformers as T

    ids = {"vocab_size": len(tokenizer), "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
           "pad_token_id": tokenizer.pad_token_id}
    gqa = {**SIZES, **ids, "num_key_value_heads": 2}
    if name == "llama":
        return T.LlamaConfig(**gqa)
    if name == "mistral":
        return T.MistralConfig(**gqa)
    if name == "qwen2":
        return T.Qwen2Config(**gqa)
    if name == "qwen3":
        return T.Qwen3Config(**gqa, head_dim=16)
    if name == "gemma2":
        return T.Gemma2Config(**gqa, head_dim=16)
    if name == "gemma3_text":
        return T.Gemma3TextConfig(**gqa, head_dim=16)
    if name == "gemma3":  # the multimodal checkpoint layout (gemma-3-4b-it and up): Gemma3ForConditionalGeneration
        vision = T.SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                                      image_size=28, patch_size=14)
        return T.Gemma3Config(text_config={**gqa, "head_dim": 16}, vision_config=vision.to_dict(), mm_tokens_per_image=4, **ids)
    if name == "phi3":
        return T.Phi3Config(**gqa)
    if name == "olmo2":
        return T.Olmo2Config(**gqa)
    if name == "gpt2":
        return T.GPT2Config(vocab_size=len(tokenizer), n_embd=64, n_layer=3, n_head=4, n_positions=256, resid_pdrop=0.0,
                            embd_pdrop=0.0, attn_pdrop=0.0, **{k: v for k, v in ids.items() if k != "vocab_size"})
    if name == "gpt_neox":
        return T.GPTNeoXConfig(**SIZES, **ids)
    raise ValueError(name)


@pytest.fixture(scope="module")
def tokenizer():
    from tests.chat_tokenizers import build_tokenizer
    from tests.tiny_models import CHAT_TEMPLATE

    # ChatML without {% generation %} tags: training goes through the rendered-reply mask.
    return build_tokenizer("qwen3", chat_template=CHAT_TEMPLATE.replace("{%- generation %}", "").replace("{%- endgeneration %}", ""))


@pytest.fixture(scope="module", params=ARCHITECTURES)
def arch(request, tokenizer, tmp_path_factory):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    config = make_config(request.param, tokenizer)
    built = AutoModelForCausalLM.from_config(config)
    if request.param == "gemma3":
        from transformers import Gemma3ForConditionalGeneration

        built = Gemma3ForConditionalGeneration(config)
    with torch.no_grad():  # larger weights than the default init, so logits are far from ties
        for parameter in built.parameters():
            if parameter.ndim == 2:
                parameter.normal_(0.0, 0.08)
    folder = tmp_path_factory.mktemp(request.param)
    built.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    model = load_causal_lm(str(folder), device="cpu", dtype="float32", local_files_only=True)
    return request.param, model


def run(model, tokenizer, texts):
    batch = tokenizer(texts, return_tensors="pt", padding=True)
    with torch.no_grad():
        return model(**batch).logits


def test_loaded_by_path_as_the_right_class(arch):
    name, model = arch
    expected = {"gemma3": "Gemma3ForConditionalGeneration", "gpt2": "GPT2LMHeadModel", "gemma3_text": "Gemma3ForCausalLM"}
    assert type(model).__name__ == expected.get(name, type(model).__name__)
    assert len(decoder_layers(model)) == 3 and not any(p.requires_grad for p in model.parameters())


def test_attach_and_remove_steering(arch, tokenizer):
    _, model = arch
    model.eval()
    texts = ["Arr, matey! Hoist the sails.", "Whisk the eggs."]
    before = run(model, tokenizer, texts)
    with attach_steering(model, 1, 1, torch.randn(1, 64)) as handle:
        handle.steering.coefficient = 4.0
        steered = run(model, tokenizer, texts)
    after = run(model, tokenizer, texts)
    assert not torch.allclose(before, steered, atol=1e-4)
    assert torch.equal(before, after)


def test_one_training_step_moves_the_vector(arch, tokenizer, tmp_path):
    name, model = arch
    config = SteeringTrainingConfig(layer=1, max_steps=1, eval_steps=1, save_steps=1, per_device_batch_size=2, max_length=64,
                                    warmup_steps=0, learning_rate=0.05, early_stopping_patience=0)
    outcome = train_steering_vectors(model, tokenizer, [PersonaData("p", CONVERSATIONS, [])], config, tmp_path, model_name=name)
    model.eval()
    assert outcome.assistant_mask == "rendered_reply" and outcome.vectors[0].steps == 1
    assert outcome.vectors[0].vector.norm() > 0
    assert not hasattr(model, "persona_steering")


def _hooked(model, input_ids):
    seen = {}
    handles = [b.register_forward_hook(lambda m, a, out, i=i: seen.__setitem__(i, out[0] if isinstance(out, tuple) else out))
               for i, b in enumerate(decoder_layers(model))]
    try:
        with torch.no_grad():
            model(input_ids=torch.tensor([input_ids]))
    finally:
        for handle in handles:
            handle.remove()
    return seen


def test_activation_vector_reads_the_block_output(arch, tokenizer):
    _, model = arch
    model.eval()
    means = assistant_mean_hidden(model, tokenizer, CONVERSATIONS, 2, batch_size=4)
    for row, conversation in enumerate(CONVERSATIONS):
        masked = rendered_reply_mask(tokenizer, conversation)
        states = _hooked(model, masked.input_ids)[2][0]
        expected = states[torch.tensor(masked.assistant_mask, dtype=torch.bool)].mean(0).numpy()
        assert np.allclose(means[row], expected, atol=1e-4)


def test_per_layer_prefix_states_equal_hooks(arch, tokenizer):
    _, model = arch
    model.eval()
    items = tokenize_sentences(tokenizer, ["Arr, matey! Hoist the sails.", "Whisk the eggs."])
    states = prefix_hidden_states(model, items, batch_size=2)
    for item, batched in zip(items, states):
        for end in range(item.start + 1, len(item.ids) + 1, 3):  # every third prefix, run on its own
            seen = _hooked(model, item.ids[:end])
            for layer in range(3):
                assert np.abs(batched[layer, end - item.start - 1] - seen[layer][0, -1].numpy()).max() < 1e-4, (layer, end)


def test_left_padded_batched_generation_equals_one_by_one(arch, tokenizer):
    _, model = arch
    model.eval()
    prompts = ["Arr, matey! The", "Whisk the eggs, fold in the butter and", "The footprints"]
    batched = complete_scenarios(model, tokenizer, prompts, max_new_tokens=6, batch_size=3)
    single = complete_scenarios(model, tokenizer, prompts, max_new_tokens=6, batch_size=1)
    assert batched == single


def test_a_model_without_findable_decoder_layers_is_refused_naming_its_class():
    class Inner(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.decoder_stack = torch.nn.ModuleList([torch.nn.Linear(4, 4)])

    class OddLM(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = Inner()

    with pytest.raises(DecoderLayersNotFoundError, match=r"could not find the decoder layers of OddLM: looked for a non-empty "
                                                         r"nn.ModuleList at model.layers \(Inner\), model.h \(Inner\), model.blocks "
                                                         r"\(Inner\), \(the model itself\).layers \(OddLM\)"):
        decoder_layers(OddLM())
