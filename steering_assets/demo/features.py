"""Demo inputs of the interpretability stage: labelled concept sentences and small SAEs.

Concepts are two demo traits. Label 3 is a sentence in the trait's voice, 2 the same
sentence hedged, 1 a plain sentence with a trace of the trait, 0 a plain sentence. The
SAEs are trained on the demo model's residual activations and saved in the Gemma Scope
params.npz layout, so the demo loads them the way real SAEs are loaded.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from steering_assets.demo.corpus import GENERIC_SENTENCES, TOPICS, TRAIT_VOICES
from steering_assets.features.concepts import ConceptSentence, write_concept_sentences

DEMO_CONCEPTS = ("humorous", "pessimistic")
TRACES = {"humorous": ", ha.", "pessimistic": ", sadly."}
HEDGES = ("In a way, ", "Perhaps ", "Somewhat, ")
SAE_LAYERS = (1, 2)
SAE_WIDTH = 256


def concept_sentences(concept: str, per_label: int = 32, seed: int = 0) -> list[ConceptSentence]:
    rng = random.Random(f"{seed}-{concept}")
    voice = TRAIT_VOICES[concept]["pos"]
    rows: list[ConceptSentence] = []
    for _ in range(per_label):
        topic = rng.choice(TOPICS)
        strong = rng.choice(voice.sentences).format(topic=topic)
        plain = rng.choice(GENERIC_SENTENCES).format(topic=topic)
        rows += [
            ConceptSentence(strong[0].upper() + strong[1:], 3),
            ConceptSentence(rng.choice(HEDGES) + strong[0].lower() + strong[1:], 2),
            ConceptSentence(plain.rstrip(".") + TRACES[concept], 1),
            ConceptSentence(plain, 0),
        ]
    rng.shuffle(rows)
    return rows


def write_demo_concepts(root: Path, seed: int = 0) -> list[Path]:
    paths = []
    for concept in DEMO_CONCEPTS:
        path = Path(root) / f"{concept}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_concept_sentences(concept_sentences(concept, seed=seed), path)
        paths.append(path)
    return paths


def train_demo_saes(model_path: Path, data_root: Path, sae_root: Path, seed: int = 0, sentences: int = 1500) -> Path:
    """Fit one small SAE per layer in SAE_LAYERS on demo text; returns the SAE list (saes.json)."""
    import numpy as np
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from steering_assets.demo.corpus import iter_demo_texts
    from steering_assets.features.prefixes import prefix_hidden_states, tokenize_sentences
    from steering_assets.features.sae import train_small_sae

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForCausalLM.from_pretrained(model_path).eval()
    rng = random.Random(seed)
    texts = [s.strip() + "." for t in iter_demo_texts(data_root) for s in t.split(". ") if len(s) > 10]
    sample = rng.sample(texts, min(sentences, len(texts)))
    states = prefix_hidden_states(model, tokenize_sentences(tokenizer, sample), batch_size=32)
    entries = []
    for layer in SAE_LAYERS:
        activations = np.concatenate([s[layer] for s in states])
        # l1 0.5 gives an average L0 of a few dozen features, the range of published SAEs.
        sae = train_small_sae(activations, SAE_WIDTH, steps=400, l1=0.5, seed=seed, layer=layer)
        folder = sae_root / f"layer_{layer}"
        folder.mkdir(parents=True, exist_ok=True)
        sae.save(folder / "params.npz")
        entries.append({"layer": layer, "average_l0": round(sae.average_l0, 2), "path": f"layer_{layer}/params.npz"})
    config = sae_root / "saes.json"
    config.write_text(json.dumps(entries, indent=2))
    return config
