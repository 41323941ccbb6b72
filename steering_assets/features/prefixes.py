"""Per-prefix features of sentences from one causal forward pass.

In a causal LM, position t of a single pass over a sentence sees exactly tokens 1..t, so
its hidden state is the last-token state of prefix t. One batched pass therefore yields
every prefix of every sentence; the naive way runs one forward per prefix. Prefixes start
after the tokenizer's BOS (the BOS token alone is not a fragment), and layer L is the output
of decoder block L, read with hooks (``steering_assets.models.residual``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from steering_assets.core.errors import InputError


class EmptySentenceError(InputError, ValueError):
    """A sentence with no tokens has no prefixes."""


class NonFiniteHiddenStatesError(InputError, FloatingPointError):
    """NaN or inf in hidden states: reported, never silently used."""


@dataclass(frozen=True)
class SentenceTokens:
    """A sentence's token ids as the model reads them, and where its fragments start.

    ``ids`` include the special tokens the tokenizer adds in front (BOS for Gemma and Llama):
    the model expects them as context. The fragments (cumulative prefixes) start after them
    at ``start``: the BOS token alone is not a fragment (docs/assets.md, concepts/sentence_features). Fragment ``i`` is
    ``ids[: start + i + 1]``, and there are ``len(ids) - start`` of them.
    """

    ids: list[int]
    start: int = 0

    @property
    def n_fragments(self) -> int:
        return len(self.ids) - self.start


def _leading_special(ids: list[int], special: set[int]) -> int:
    count = 0
    while count < len(ids) and ids[count] in special:
        count += 1
    return count


def tokenize_sentences(tokenizer: Any, sentences: Sequence[str]) -> list[SentenceTokens]:
    """Token ids of each sentence with the tokenizer's own leading special tokens, fragments after them.

    The sentence's own tokens are its encoding without special tokens; they are located in the
    encoding with special tokens, whose leading part (BOS) becomes context and whose trailing
    part (an EOS some tokenizers append) is dropped. Raises ``EmptySentenceError`` for a
    sentence with no tokens of its own.
    """
    texts = list(sentences)
    full = tokenizer(texts, add_special_tokens=True)["input_ids"]
    plain = tokenizer(texts, add_special_tokens=False)["input_ids"]
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    result = []
    for index, (sentence, with_special, own) in enumerate(zip(texts, full, plain)):
        if not own:
            raise EmptySentenceError(f"sentence {index} ({sentence!r}) tokenizes to nothing; remove it or fix the text")
        start = next((i for i in range(len(with_special) - len(own) + 1) if with_special[i : i + len(own)] == own), None)
        if start is None:
            # Special tokens changed how the text itself was split: keep the encoding the model sees,
            # minus its leading and trailing special tokens.
            start = _leading_special(with_special, special)
            end = len(with_special) - _leading_special(with_special[::-1], special)
            result.append(SentenceTokens(list(with_special[:end]), start))
        else:
            result.append(SentenceTokens(list(with_special[: start + len(own)]), start))
    return result


def _check_finite(array: np.ndarray, what: str) -> np.ndarray:
    if not np.isfinite(array).all():
        bad = int((~np.isfinite(array)).sum())
        raise NonFiniteHiddenStatesError(f"{what}: {bad} non-finite values in the hidden states")
    return array


def _as_tokens(sentence: SentenceTokens | Sequence[int]) -> SentenceTokens:
    return sentence if isinstance(sentence, SentenceTokens) else SentenceTokens(list(sentence), 0)


def prefix_hidden_states(model: Any, sentences: Sequence[SentenceTokens], batch_size: int = 16) -> list[np.ndarray]:
    """For each sentence, ``[n_layers, n_fragments, d]``: every block's output at each fragment's last token.

    Layer L is the output of decoder block L (docs/steering.md#layers), captured with hooks, the last block
    included. Sentences are right-padded within a batch; with a causal mask, padding after
    a sentence never affects its positions. Raises ``NonFiniteHiddenStatesError`` naming the
    sentence when a state is NaN or infinite.
    """
    import torch

    from steering_assets.models.hooks import input_device
    from steering_assets.models.residual import all_block_outputs

    items = [_as_tokens(s) for s in sentences]
    device = input_device(model)
    pad = getattr(getattr(model, "config", None), "pad_token_id", None) or 0
    results: list[np.ndarray] = []
    with torch.no_grad():
        for first in range(0, len(items), batch_size):
            chunk = items[first : first + batch_size]
            width = max(len(item.ids) for item in chunk)
            input_ids = torch.full((len(chunk), width), pad, dtype=torch.long)
            attention = torch.zeros((len(chunk), width), dtype=torch.long)
            for row, item in enumerate(chunk):
                input_ids[row, : len(item.ids)] = torch.tensor(item.ids)
                attention[row, : len(item.ids)] = 1
            stacked = all_block_outputs(model, input_ids=input_ids.to(device), attention_mask=attention.to(device))
            stacked = stacked.float().cpu().numpy()  # [n_layers, batch, width, d]
            for row, item in enumerate(chunk):
                results.append(_check_finite(stacked[:, row, item.start : len(item.ids)], f"sentence {first + row}"))
    return results




@dataclass
class SentenceFeatures:
    """What one feature NPZ holds (keys as in docs/assets.md, concepts/sentence_features)."""

    embeddings: np.ndarray  # [n_frag, d_embed] sentence-encoder embedding of each prefix
    hidden_states: np.ndarray  # [n_layers, n_frag, d_model]
    activations: np.ndarray  # [n_sae_layers, n_frag, d_sae]
    is_final_token: np.ndarray  # [n_frag] bool
    concept_strength_label: int
    sentence: str
    sentence_index: int
    layers: np.ndarray  # SAE layer ids, in the order of `activations`
    average_l0s: np.ndarray
    # Layer ids of the `hidden_states` rows. Our writer stores every decoder block (0..n-1);
    # NPZs of the original s1 writer have no such key: their rows are the `layers` ids.
    hidden_state_layers: np.ndarray | None = None

    def save(self, path) -> None:
        extra = {} if self.hidden_state_layers is None else {"hidden_state_layers": self.hidden_state_layers.astype(np.int64)}
        with open(path, "wb") as handle:
            np.savez_compressed(
                handle,
                **extra,
                embeddings=self.embeddings.astype(np.float32),
                hidden_states=self.hidden_states.astype(np.float32),
                activations=self.activations.astype(np.float32),
                is_final_token=self.is_final_token.astype(bool),
                concept_strength_label=np.int64(self.concept_strength_label),
                sentence=np.str_(self.sentence),
                sentence_index=np.int64(self.sentence_index),
                layers=self.layers.astype(np.int64),
                average_l0s=self.average_l0s.astype(np.float32),
            )

    @classmethod
    def load(cls, path) -> "SentenceFeatures":
        with np.load(path, allow_pickle=False) as data:
            return cls(
                embeddings=data["embeddings"], hidden_states=data["hidden_states"], activations=data["activations"],
                is_final_token=data["is_final_token"], concept_strength_label=int(data["concept_strength_label"]),
                sentence=str(data["sentence"]), sentence_index=int(data["sentence_index"]),
                layers=data["layers"], average_l0s=data["average_l0s"],
                hidden_state_layers=data["hidden_state_layers"] if "hidden_state_layers" in data.files else None,
            )


def prefix_texts(tokenizer: Any, sentence: SentenceTokens) -> list[str]:
    """The text of each fragment (special tokens such as BOS left out)."""
    return [tokenizer.decode(sentence.ids[:end], skip_special_tokens=True) for end in range(sentence.start + 1, len(sentence.ids) + 1)]


def sentence_features(
    model: Any, tokenizer: Any, encoder: Any, saes: dict, sentences: Sequence[str], labels: Sequence[int],
    *, first_index: int = 0, batch_size: int = 16,
) -> list[SentenceFeatures]:
    """Features of every prefix of every sentence: encoder embeddings, all hidden states, SAE activations."""
    tokens = tokenize_sentences(tokenizer, sentences)
    hidden = prefix_hidden_states(model, tokens, batch_size)
    layers = np.array(sorted(saes), dtype=np.int64)
    features = []
    for offset, (sentence, label, item, states) in enumerate(zip(sentences, labels, tokens, hidden)):
        texts = prefix_texts(tokenizer, item)
        activations = np.stack([saes[layer].encode(states[layer]) for layer in layers]) if len(layers) else np.zeros((0, item.n_fragments, 0))
        final = np.zeros(item.n_fragments, dtype=bool)
        final[-1] = True
        features.append(
            SentenceFeatures(
                embeddings=encoder.encode(texts), hidden_states=states, activations=activations, is_final_token=final,
                concept_strength_label=int(label), sentence=sentence, sentence_index=first_index + offset,
                layers=layers, average_l0s=np.array([saes[layer].average_l0 for layer in layers], dtype=np.float32),
                hidden_state_layers=np.arange(states.shape[0], dtype=np.int64),
            )
        )
    return features
