"""Demo inputs of the interpretability stage, derived from what SmolLM2 said in its own rollouts.

Concept sentences: the first sentence of each of the model's replies for a demo trait (both the
``pos`` and the ``neg`` instruction), labelled 0-3 by the judge's 0-100 trait-expression score of
the whole reply (0-24 -> 0, 25-49 -> 1, 50-74 -> 2, 75-100 -> 3). The labels are the judge's, so a
classifier's cross-validated score measures how well the residual stream predicts that judge.

SAEs: no public SAE exists for SmolLM2, so the demo fits a small one per layer on the model's own
block outputs over its trait replies' sentences (``features/sae.py``) and saves it in the Gemma Scope
``params.npz`` layout with a ``saes.json`` list, the files the SAE loader reads for real SAEs.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, Callable

from steering_assets.core.artifacts import atomic_path, write_json_atomic
from steering_assets.formats.concepts import ConceptSentence, write_concept_sentences

# Blocks of SmolLM2's 30 the SAEs are fitted at: early-middle and the steering layer's neighbourhood.
SAE_LAYERS = (8, 15)
SAE_WIDTH = 1024
SAE_STEPS = 300
# The L1 weight per unit of the layer's median token norm: gives an average L0 of a few dozen
# features on SmolLM2's block outputs (the range of published SAEs).
SAE_L1 = 0.3
SAE_VERSION = "1"
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def first_sentence(text: str, max_chars: int = 200) -> str:
    """The reply's first sentence (at most ``max_chars``, cut at a word)."""
    sentence = _SENTENCE_END.split(text.strip(), maxsplit=1)[0].strip()
    if len(sentence) > max_chars:
        sentence = sentence[:max_chars].rsplit(" ", 1)[0]
    return sentence


def strength_label(score: float) -> int:
    """0-100 trait expression -> the 0-3 concept-strength label."""
    return min(3, int(score // 25))


def trait_replies(data_root: Path, source_model: str, trait: str) -> list[tuple[str, int | str | None]]:
    """(reply, score) of one trait's rollouts as the platform wrote them; score None when unscored."""
    from steering_assets.formats.rollouts import PERSONA_KINDS, PersonaRef
    from steering_assets.personas.loading import read_responses, read_scores

    kind = PERSONA_KINDS["traits"]
    ref = PersonaRef(kind, source_model, trait)
    scores = read_scores(ref.scores_path(data_root), kind)
    rows = read_responses(ref.responses_path(data_root), kind)
    return [(next((t["content"] for t in reversed(row.conversation) if t["role"] == "assistant"), ""), scores.get(row.score_key))
            for row in rows]


def write_demo_concepts(data_root: Path, source_model: str, concepts_root: Path, traits: list[str],
                        log: Callable[[str], None] = print) -> dict[str, dict[int, int]]:
    """Write ``{concepts_root}/{trait}.jsonl`` from the traits' scored replies; returns the label counts per trait."""
    counts = {}
    for trait in traits:
        sentences, skipped = [], 0
        seen: set[str] = set()
        for answer, score in trait_replies(data_root, source_model, trait):
            sentence = first_sentence(answer)
            if not isinstance(score, (int, float)) or len(sentence) < 12 or sentence in seen:
                skipped += 1  # refused, unscored, too short to carry the trait, or a duplicate
                continue
            seen.add(sentence)
            sentences.append(ConceptSentence(sentence, strength_label(float(score))))
        by_label = {label: sum(s.label == label for s in sentences) for label in range(4)}
        if skipped:
            log(f"concept {trait}: {skipped} replies left out (refused, unscored, under 12 characters or repeated)")
        write_concept_sentences(sentences, Path(concepts_root) / f"{trait}.jsonl")
        counts[trait] = by_label
    return counts


def assistant_replies(data_root: Path, pattern: str = "*/**/*.jsonl") -> list[str]:
    """Every assistant turn of the rollout files under ``data_root`` matching ``pattern``, in sorted file order."""
    texts = []
    for path in sorted(Path(data_root).glob(pattern)):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                conversation = json.loads(line).get("conversation") or []
                texts += [turn["content"] for turn in conversation if turn.get("role") == "assistant"]
    return texts


def rollout_sentences(data_root: Path, max_sentences: int = 1200) -> list[str]:
    """Sentences of the replies in ``{data_root}/{model}/{kind}/responses/`` files, in a fixed order.

    In the demo's assistant-axis layout that is the traits' replies (``traits_240/responses``): the
    roles' files sit one level up (``{model}/responses``) and are not read.
    """
    texts = assistant_replies(data_root, "*/*/responses/*.jsonl")
    sentences = [s.strip() for text in texts for s in _SENTENCE_END.split(text) if len(s.strip()) >= 12]
    step = max(1, len(sentences) // max_sentences)
    return sentences[::step][:max_sentences]


def _inputs_digest(model_folder: Path, sentences: list[str], recipe: list) -> str:
    digest = hashlib.sha256(SAE_VERSION.encode())
    digest.update(json.dumps(recipe).encode())
    for path in sorted(Path(model_folder).glob("*.safetensors")):
        digest.update(f"{path.name}:{path.stat().st_size}".encode())
    digest.update("\n".join(sentences).encode())
    return digest.hexdigest()[:16]


def train_demo_saes(model: Any, tokenizer: Any, model_folder: Path, data_root: Path, sae_root: Path, seed: int = 0,
                    log: Callable[[str], None] = print, layers: tuple[int, ...] = SAE_LAYERS, width: int = SAE_WIDTH,
                    steps: int = SAE_STEPS) -> Path:
    """Fit one SAE (``width`` features, ``steps`` steps) per block in ``layers`` on the model's block outputs
    over its trait replies' sentences (``rollout_sentences``).

    Cached: a stamp of the weights and the sentences skips the fit when both are unchanged. Returns
    the ``saes.json`` path. Each SAE's average L0 (active features per token) is recorded there.
    """
    import numpy as np

    from steering_assets.features.prefixes import prefix_hidden_states, tokenize_sentences
    from steering_assets.models.sae import train_small_sae

    sae_root = Path(sae_root)
    config = sae_root / "saes.json"
    sentences = rollout_sentences(data_root)
    if not sentences:
        raise ValueError(f"no reply sentences under {data_root}: generate the rollouts before fitting the demo SAEs")
    stamp = _inputs_digest(model_folder, sentences, [list(layers), width, steps, SAE_L1])
    stamp_path = sae_root / "stamp.json"
    if config.is_file() and stamp_path.is_file() and json.loads(stamp_path.read_text()).get("inputs") == stamp:
        log(f"demo SAEs: cached ({config})")
        return config
    states = prefix_hidden_states(model, tokenize_sentences(tokenizer, sentences), batch_size=32)
    entries = []
    for layer in layers:
        activations = np.concatenate([s[layer] for s in states]).astype(np.float32)
        # The reconstruction error grows with the square of the activations' scale and the L1 term with the
        # scale: a weight in units of the median token norm keeps the sparsity the same at any layer.
        scale = float(np.median(np.linalg.norm(activations, axis=1)))
        sae = train_small_sae(activations, width, steps=steps, l1=SAE_L1 * scale, seed=seed, layer=layer)
        folder = sae_root / f"layer_{layer}"
        folder.mkdir(parents=True, exist_ok=True)
        sae.save(folder / "params.npz")
        entries.append({"layer": layer, "average_l0": round(sae.average_l0, 2), "path": f"layer_{layer}/params.npz"})
        log(f"demo SAE at block {layer}: {width} features on {len(activations)} token activations, "
            f"average L0 {sae.average_l0:.1f}")
    with atomic_path(config) as tmp:
        tmp.write_text(json.dumps(entries, indent=2))
    write_json_atomic({"inputs": stamp, "sentences": len(sentences)}, stamp_path)
    return config
