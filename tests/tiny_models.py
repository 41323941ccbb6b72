"""A tiny random-weight Qwen3-architecture causal LM and a byte-level BPE tokenizer, for tests of mechanics.

The tokenizer is trained on the text it is given (the tests pass SmolLM2's recorded replies,
``tests/world.py``); the weights are random from a seed, so nothing here has learned anything:
tests that read what a model says use the real SmolLM2 (``tests/real_models.py``). Saved with
``save_pretrained`` and loaded back by path, exactly as a hub model id would be.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

# ChatML, as Qwen models use it; {% generation %} marks assistant tokens so that
# trainers can compute the loss on the assistant's words only.
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' }}"
    "{%- if message['role'] == 'assistant' %}"
    "{%- generation %}{{- message['content'] + '<|im_end|>' }}{%- endgeneration %}"
    "{%- else %}"
    "{{- message['content'] + '<|im_end|>' }}"
    "{%- endif %}"
    "{{- '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

TINY_MODEL_SHAPE = {
    "hidden_size": 128,
    "intermediate_size": 256,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 32,
    "max_position_embeddings": 1024,
}


def train_tokenizer(texts: Iterable[str], vocab_size: int = 4096):
    """Train a byte-level BPE tokenizer and wrap it with the chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(texts, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens={"im_start": "<|im_start|>"},
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_tiny_model(tokenizer, seed: int = 0):
    """A randomly initialised Qwen3ForCausalLM sized for a CPU; deterministic from ``seed``."""
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    config = Qwen3Config(
        vocab_size=len(tokenizer),
        tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
        **TINY_MODEL_SHAPE,
    )
    torch.manual_seed(seed)
    return Qwen3ForCausalLM(config)


def save_tiny_model(texts: Iterable[str], path: Path, seed: int = 0) -> Path:
    tokenizer = train_tokenizer(texts)
    model = build_tiny_model(tokenizer, seed=seed)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
