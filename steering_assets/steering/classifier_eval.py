"""``steering_eval``: each persona's vector evaluated with the persona classifier (probe on held-out replies,
perplexity with and without it, a steered-generation sweep against a random direction, cosine with the
activation vector), and the summary table of every evaluated persona."""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import polars as pl

from steering_assets.core.artifacts import ArtifactIntegrityError, ArtifactResult, ArtifactStore, fingerprint
from steering_assets.formats.rollouts import ROLES, PersonaRef
from steering_assets.personas.materialize import load_persona_dataset, load_training_split, split_folder
from steering_assets.steering.activation_vectors import activation_folder, load_activation_vector
from steering_assets.steering.config import EVAL_CODE_VERSION, EVAL_FILE, MIN_PROBE_ROWS
from steering_assets.steering.evaluation import (
    EvaluationConfig,
    assistant_mean_hidden,
    assistant_perplexity,
    cosine,
    projection_classifier,
    projection_regression,
    steered_generations,
    steering_effect,
)
from steering_assets.steering.negatives import Negatives, baseline_file_negatives, persona_negatives, sample
from steering_assets.steering.persona_classifier import PersonaClassifier, load_persona_classifier
from steering_assets.steering.trained_vectors import vector_folder

# ---- persona classifier ---------------------------------------------------------------


# ---- activation (difference-of-means) vectors -----------------------------------------


# ---- evaluation ---------------------------------------------------------------------

def eval_folder(store: ArtifactStore, ref: PersonaRef) -> Path:
    return store.folder(ref.kind.name, "steering_eval", ref.source_model, ref.name)


def held_out_rows(store: ArtifactStore, ref: PersonaRef) -> pl.DataFrame:
    """Rows of the persona dataset that training never saw (scored ones only)."""
    train, _ = load_training_split(store, ref)
    keys = ["label", "prompt_index", "question_index"]
    dataset = load_persona_dataset(store, ref).filter(pl.col("extract_score").is_not_null())
    return dataset.join(train.select(keys), on=keys, how="anti")


def evaluate_persona(
    ref: PersonaRef, store: ArtifactStore, model: Any, tokenizer: Any, classifier: PersonaClassifier, encoder: Any,
    config: EvaluationConfig, negatives: Negatives | None = None, model_name: str = "the target model",
) -> dict[str, Any]:
    """Probe, perplexity, steered generations and cosine of one persona's vector (see README, ``steering_eval``).

    ``negatives`` (default ``persona_negatives``) give the probe's negative replies and the
    neutral prompts the steered generations start from.
    """
    from steering_assets.models.hooks import attach_steering
    from steering_assets.steering.vectors import check_fits, read_vector

    vector, vector_config = read_vector(vector_folder(store, ref))
    layer = int(vector_config["layer"])
    check_fits(vector, layer, model, str(vector_folder(store, ref)))
    activation = load_activation_vector(store, ref)
    direction = vector.numpy()
    if negatives is None:
        negatives = persona_negatives(store, ref)
    baseline = negatives.conversations
    held_out = held_out_rows(store, ref)
    result: dict[str, Any] = {"layer": layer, "vector_norm": float(np.linalg.norm(direction)), "baselines": negatives.summary()}

    result["probe"] = _probe(ref, store, model, tokenizer, held_out, baseline, direction, layer, config, result["baselines"])

    _, validation = load_training_split(store, ref)
    perplexity_rows = validation["messages"].to_list() or [r["messages"] for r in held_out.head(32).to_dicts()]
    with attach_steering(model, layer, 1, vector[None].float()) as handle:
        steered_ppl = assistant_perplexity(model, tokenizer, perplexity_rows, config.batch_size)
        handle.steering.coefficient = 0.0
        zero_ppl = assistant_perplexity(model, tokenizer, perplexity_rows, config.batch_size)
    result["perplexity"] = {"with_vector": steered_ppl, "zero_vector": zero_ppl, "rows": len(perplexity_rows)}

    result["steering"] = _steering_sweep(ref, model, tokenizer, baseline, vector, layer, classifier, encoder, config,
                                         model_name, result["baselines"])
    result["cosine_with_activation_vector"] = cosine(direction, activation)
    return result

def _probe(ref: PersonaRef, store: ArtifactStore, model: Any, tokenizer: Any, held_out: pl.DataFrame,
           baseline: list, direction: np.ndarray, layer: int, config: EvaluationConfig, baselines: dict) -> dict:
    """The vector as a probe on held-out replies: roles against baseline replies (AUC), traits against their scores."""
    seed = config.seed
    if ref.kind is ROLES:
        selection = store.load_manifest(split_folder(store, ref), verify=False)["details"]["selection"]
        # Only rows of the trained labels: in-file baseline rows are scored too (default_p{i}_q{j}).
        kept = held_out.filter(
            (pl.col("extract_score") >= selection["min_score"]) & pl.col("label").is_in(list(selection["keep_labels"]))
        ).to_dicts()
        positives = sample([r["messages"] for r in kept], config.held_out_rows, seed)
        if len(positives) < MIN_PROBE_ROWS:
            # Every kept reply went into training (a persona short of its budget): an honest probe is impossible.
            return {"skipped": f"only {len(positives)} held-out replies (training used the rest)"}
        probe_negatives = sample(baseline, len(positives), seed)
        baselines["probe_negatives"] = len(probe_negatives)
        return projection_classifier(
            assistant_mean_hidden(model, tokenizer, positives, layer, config.batch_size),
            assistant_mean_hidden(model, tokenizer, probe_negatives, layer, config.batch_size),
            direction, seed,
        )
    rows = sample(held_out.to_dicts(), config.held_out_rows, seed)
    if len(rows) < 2 * MIN_PROBE_ROWS:
        return {"skipped": f"only {len(rows)} held-out scored replies"}
    hidden = assistant_mean_hidden(model, tokenizer, [r["messages"] for r in rows], layer, config.batch_size)
    return projection_regression(hidden, np.array([r["extract_score"] for r in rows], dtype=float), direction, seed)


def _steering_sweep(ref: PersonaRef, model: Any, tokenizer: Any, baseline: list, vector: Any, layer: int, classifier: Any,
                    encoder: Any, config: EvaluationConfig, model_name: str, baselines: dict) -> dict:
    """Steered generations over the coefficient sweep, against a random direction of the same norm, scored by the
    persona classifier."""
    import torch

    from steering_assets.steering.judged_eval import random_direction, typical_residual_norm

    seed = config.seed
    questions = list(dict.fromkeys(c[-2]["content"] for c in baseline if len(c) >= 2 and c[-2]["role"] == "user"))
    prompts = questions[: config.n_prompts]
    baselines["prompt_questions"] = len(prompts)
    # Coefficients are in units of the layer's typical residual norm: the vector is rescaled to that norm.
    residual_norm = typical_residual_norm(model, tokenizer, sample(baseline, 32, seed), layer, model_name=model_name)
    unit = vector.float() / (vector.float().norm() or 1.0)
    random_unit = torch.from_numpy(random_direction(unit.shape[0], seed, ref.partition_key))
    generations = steered_generations(model, tokenizer, prompts, layer, unit * residual_norm, config, model_name=model_name)
    random_config = replace(config, coefficients=tuple(c for c in config.coefficients if c != 0.0))
    random_generations = steered_generations(model, tokenizer, prompts, layer, random_unit * residual_norm, random_config,
                                             model_name=model_name)
    effect = steering_effect(generations, ref.partition_key, classifier, encoder, random_generations,
                             config.effect_min_probability, config.effect_min_ratio)
    return {
        "units": "typical residual-stream norm at the vector's layer",
        "residual_norm": residual_norm,
        "vector_norm_in_residual_norms": float(vector.float().norm()) / residual_norm,
        "random_probability": effect.random_probability,
        "random_at_best": effect.random_at_best,
        "random_examples": {str(c): texts[:3] for c, texts in random_generations.items()},
        "coefficients": effect.coefficients,
        "target_probability": effect.target_probability,
        "best_coefficient": effect.best_coefficient,
        "best_probability": effect.best,
        "unsteered_probability": effect.unsteered,
        "shows_effect": effect.shows_effect,
        "effect_bar": {"min_probability": config.effect_min_probability, "min_ratio": config.effect_min_ratio},
        "prompts": len(prompts),
        "examples": {str(c): texts for c, texts in effect.examples.items()},
    }


def materialize_steering_evals(
    refs: Sequence[PersonaRef], store: ArtifactStore, model: Any, tokenizer: Any, model_name: str, encoder: Any,
    config: EvaluationConfig, log: Callable[[str], None] = print,
) -> dict[str, ArtifactResult]:
    from steering_assets.models.loading import padding_token_id

    padding_token_id(tokenizer, model_name)  # before any work: batches need a pad (or EOS) token
    results: dict[str, ArtifactResult] = {}
    kind = refs[0].kind
    classifier, classifier_print = load_persona_classifier(store, kind)
    files = {model: baseline_file_negatives(store, model) for model in {ref.source_model for ref in refs}}
    for ref in refs:
        negatives = persona_negatives(store, ref, files[ref.source_model])
        vector_print = store.load_manifest(vector_folder(store, ref), verify=False)["fingerprint"]
        activation_print = store.load_manifest(activation_folder(store, ref), verify=False)["fingerprint"]
        key = fingerprint({"code": EVAL_CODE_VERSION, "vector": vector_print, "activation": activation_print,
                           "classifier": classifier_print, "baselines": negatives.prints, "model": model_name,
                           "config": asdict(config)})
        folder = eval_folder(store, ref)
        existing = store.current_manifest(folder, key)
        if existing is not None:
            results[ref.partition_key] = ArtifactResult(folder, existing, skipped=True)
            continue
        evaluation = evaluate_persona(ref, store, model, tokenizer, classifier, encoder, config, negatives, model_name=model_name)
        steering = evaluation["steering"]
        log(f"{ref.partition_key}: target probability {steering['unsteered_probability']:.2f} unsteered -> "
            f"{steering['best_probability']:.2f} at coefficient {steering['best_coefficient']}")
        manifest = store.write_artifact(
            folder, {EVAL_FILE: lambda p, e=evaluation: p.write_text(json.dumps(e, indent=2))}, fingerprint_value=key, details=evaluation
        )
        results[ref.partition_key] = ArtifactResult(folder, manifest, skipped=False)
    return results


def effect_bar_text(store: ArtifactStore, refs: Sequence[PersonaRef]) -> str:
    """The effect bar the evaluations of ``refs`` were judged by, in words (several bars are each named)."""
    bars = []
    for ref in refs:
        try:
            bar = store.load_manifest(eval_folder(store, ref), verify=False)["details"]["steering"].get("effect_bar")
        except ArtifactIntegrityError:
            continue
        bar = bar or {"min_probability": 0.5, "min_ratio": 2.0}  # evaluations recorded before the bar was stored
        text = (f"p >= {bar['min_probability']:g}, >= {bar['min_ratio']:g}x unsteered and >= {bar['min_ratio']:g}x "
                "a random direction of the same norm")
        if text not in bars:
            bars.append(text)
    return "; ".join(bars) or "no evaluations"


def evaluation_table(store: ArtifactStore, refs: Sequence[PersonaRef]) -> list[dict[str, Any]]:
    """One row per evaluated persona (the summary shown in the UI and by `make demo`)."""
    rows = []
    for ref in refs:
        try:
            details = store.load_manifest(eval_folder(store, ref), verify=False)["details"]
        except ArtifactIntegrityError:
            continue
        steering, probe = details["steering"], details["probe"]
        rows.append({
            "persona": ref.partition_key,
            "probe": (f"AUC {probe['roc_auc']:.2f} ({probe['n_rows']})" if "roc_auc" in probe
                      else f"rho {probe['spearman']:.2f} ({probe['n_rows']})" if probe.get("spearman") is not None
                      else f"rho undefined: {probe['spearman_undefined']}" if "spearman_undefined" in probe else "n/a"),
            "ppl zero -> vector": f"{details['perplexity']['zero_vector']:.2f} -> {details['perplexity']['with_vector']:.2f}",
            "p(target) unsteered": round(steering["unsteered_probability"], 3),
            "p(target) steered": round(steering["best_probability"], 3),
            "best coefficient": steering["best_coefficient"],
            "effect": "yes" if steering["shows_effect"] else "no",
            "cos(trained, activation)": round(details["cosine_with_activation_vector"], 3),
        })
    return rows
