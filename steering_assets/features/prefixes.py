"""Per-prefix features of sentences from one causal forward pass.

In a causal LM, position t of a single pass over a sentence sees exactly tokens 1..t, so
its hidden state is the last-token state of prefix t. One batched pass therefore yields
every prefix of every sentence; the naive way runs one forward per prefix.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np


class EmptySentenceError(ValueError):
    """A sentence with no tokens has no prefixes."""


class NonFiniteHiddenStatesError(FloatingPointError):
    """NaN or inf in hidden states: reported, never silently used."""


def sentence_token_ids(tokenizer: Any, sentences: Sequence[str]) -> list[list[int]]:
    ids = tokenizer(list(sentences), add_special_tokens=True)["input_ids"]
    for index, (sentence, tokens) in enumerate(zip(sentences, ids)):
        if not tokens:
            raise EmptySentenceError(f"sentence {index} ({sentence!r}) tokenizes to nothing; remove it or fix the text")
    return ids


def _check_finite(array: np.ndarray, what: str) -> np.ndarray:
    if not np.isfinite(array).all():
        bad = int((~np.isfinite(array)).sum())
        raise NonFiniteHiddenStatesError(f"{what}: {bad} non-finite values in the hidden states")
    return array


def prefix_hidden_states(model: Any, token_ids: Sequence[list[int]], batch_size: int = 16) -> list[np.ndarray]:
    """For each sentence, ``[n_layers, n_tokens, d]``: layer outputs at every prefix's last token.

    Sentences are right-padded within a batch; with a causal mask, padding after a
    sentence never affects its positions.
    """
    import torch

    device = next(model.parameters()).device
    pad = getattr(getattr(model, "config", None), "pad_token_id", None) or 0
    results: list[np.ndarray] = []
    with torch.no_grad():
        for start in range(0, len(token_ids), batch_size):
            chunk = token_ids[start : start + batch_size]
            width = max(len(ids) for ids in chunk)
            input_ids = torch.full((len(chunk), width), pad, dtype=torch.long)
            attention = torch.zeros((len(chunk), width), dtype=torch.long)
            for row, ids in enumerate(chunk):
                input_ids[row, : len(ids)] = torch.tensor(ids)
                attention[row, : len(ids)] = 1
            outputs = model(input_ids=input_ids.to(device), attention_mask=attention.to(device), output_hidden_states=True)
            stacked = torch.stack(outputs.hidden_states[1:]).float().cpu().numpy()  # [n_layers, batch, width, d]
            for row, ids in enumerate(chunk):
                results.append(_check_finite(stacked[:, row, : len(ids)], f"sentence {start + row}"))
    return results


def prefix_hidden_states_one_by_one(model: Any, token_ids: Sequence[list[int]]) -> list[np.ndarray]:
    """The reference way: one forward pass per prefix, keeping its last position."""
    import torch

    device = next(model.parameters()).device
    results = []
    with torch.no_grad():
        for ids in token_ids:
            per_prefix = []
            for t in range(1, len(ids) + 1):
                outputs = model(input_ids=torch.tensor([ids[:t]], device=device), output_hidden_states=True)
                per_prefix.append(torch.stack([h[0, -1] for h in outputs.hidden_states[1:]]).float().cpu().numpy())
            results.append(np.stack(per_prefix, axis=1))
    return results


@dataclass
class SentenceFeatures:
    """What one feature NPZ holds (keys as in DESIGN.md)."""

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


def prefix_texts(tokenizer: Any, token_ids: list[int]) -> list[str]:
    return [tokenizer.decode(token_ids[:t], skip_special_tokens=True) for t in range(1, len(token_ids) + 1)]


def sentence_features(
    model: Any, tokenizer: Any, encoder: Any, saes: dict, sentences: Sequence[str], labels: Sequence[int],
    *, first_index: int = 0, batch_size: int = 16,
) -> list[SentenceFeatures]:
    """Features of every prefix of every sentence: encoder embeddings, all hidden states, SAE activations."""
    ids = sentence_token_ids(tokenizer, sentences)
    hidden = prefix_hidden_states(model, ids, batch_size)
    layers = np.array(sorted(saes), dtype=np.int64)
    features = []
    for offset, (sentence, label, tokens, states) in enumerate(zip(sentences, labels, ids, hidden)):
        texts = prefix_texts(tokenizer, tokens)
        activations = np.stack([saes[layer].encode(states[layer]) for layer in layers]) if len(layers) else np.zeros((0, len(tokens), 0))
        final = np.zeros(len(tokens), dtype=bool)
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
