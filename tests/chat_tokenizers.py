"""Tokenizers built locally in the shape of real ones: the real chat templates of Qwen3, Gemma-2 and
Llama-3.x (read from ``../shared/fixtures/real_world/chat_templates/``), their special tokens, BOS
handling and pad tokens. Byte-level BPE trained on a few sentences: no downloads.
"""

from __future__ import annotations

from pathlib import Path

TEMPLATES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "real_world" / "chat_templates"

CORPUS = [
    "Arr, matey! Hoist the sails and keep a weather eye on the horizon.",
    "Whisk the eggs, fold in the butter, and never rush the oven.",
    "The footprints in the mud told me more than any confession.",
    "How are you? What do you think about a lost key? Tell me about the sea.",
    "I am a helpful assistant. Here is a plain answer to your question, with a few details.",
    "Cutting Knowledge Date: December 2023. Today Date: 26 Jul 2024. system user assistant model",
] * 20

# Special tokens as each family's tokenizer declares them (names and roles as on the hub).
FAMILIES = {
    "qwen3": {
        "template": "Qwen-Qwen3-0.6B.jinja",
        "special": ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        "added": ["<think>", "</think>"],  # added, not special (as in Qwen3)
        "bos": None, "eos": "<|im_end|>", "pad": "<|endoftext|>", "add_bos": False,
    },
    "gemma2": {
        "template": "google-gemma-2-2b-it.jinja",
        "special": ["<pad>", "<eos>", "<bos>", "<start_of_turn>", "<end_of_turn>"],
        "added": [],
        "bos": "<bos>", "eos": "<eos>", "pad": "<pad>", "add_bos": True,
    },
    "llama3": {
        "template": "meta-llama-Llama-3.2-3B-Instruct.jinja",
        "special": ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
        "added": [],
        "bos": "<|begin_of_text|>", "eos": "<|eot_id|>", "pad": None, "add_bos": True,  # Llama ships no pad token
    },
    "llama3.3": {
        "template": "meta-llama-Llama-3.3-70B-Instruct.jinja",
        "special": ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
        "added": [],
        "bos": "<|begin_of_text|>", "eos": "<|eot_id|>", "pad": None, "add_bos": True,
    },
}


def templates_present() -> bool:
    return all((TEMPLATES / spec["template"]).is_file() for spec in FAMILIES.values())


def build_tokenizer(family: str = "qwen3", *, chat_template: str | None = None, vocab_size: int = 400, pad: bool | None = None,
                    corpus: list[str] | None = None):
    """A fast tokenizer with ``family``'s special tokens, BOS behaviour and (unless given) real chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    spec = FAMILIES[family]
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=spec["special"], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    core.train_from_iterator(corpus or CORPUS, trainer)
    if spec["add_bos"]:
        bos_id = core.token_to_id(spec["bos"])
        core.post_processor = processors.TemplateProcessing(single=f"{spec['bos']} $A", pair=f"{spec['bos']} $A $B",
                                                            special_tokens=[(spec["bos"], bos_id)])
    kwargs = {"eos_token": spec["eos"]}
    if spec["bos"]:
        kwargs["bos_token"] = spec["bos"]
    with_pad = spec["pad"] is not None if pad is None else pad
    if with_pad:
        kwargs["pad_token"] = spec["pad"] or spec["special"][0]
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, **kwargs)
    extra = [token for token in spec["special"] if token not in {spec["bos"], spec["eos"], kwargs.get("pad_token")}]
    tokenizer.add_special_tokens({"additional_special_tokens": extra})
    if spec["added"]:
        tokenizer.add_tokens(spec["added"])
    tokenizer.chat_template = chat_template if chat_template is not None else (TEMPLATES / spec["template"]).read_text()
    tokenizer.name_or_path = f"local-{family}"
    return tokenizer


def tiny_qwen3(tokenizer, seed: int = 0, layers: int = 3):
    """A random tiny Qwen3ForCausalLM sized for ``tokenizer`` (mechanics only, no training)."""
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    config = Qwen3Config(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=layers,
                         num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=512,
                         tie_word_embeddings=True, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                         bos_token_id=tokenizer.bos_token_id)
    torch.manual_seed(seed)
    return Qwen3ForCausalLM(config).eval()
