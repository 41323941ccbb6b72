"""Artifacts of the evaluation stage: persona classifier, activation vectors, per-persona evaluations."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import polars as pl

from steering_assets.core.artifacts import ArtifactIntegrityError, ArtifactResult, ArtifactStore, fingerprint
from steering_assets.formats.rollouts import BASELINE_ROLES, ROLES, PersonaKind, PersonaRef
from steering_assets.models.errors import MissingBaselineError
from steering_assets.personas.pipeline import (
    DATASET_FILE,
    dataset_folder,
    load_baseline_rows,
    load_persona_dataset,
    load_training_split,
    split_folder,
)
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
from steering_assets.steering.persona_classifier import BASELINE_CLASS, PersonaClassifier
from steering_assets.steering.pipeline import vector_folder

# 2: block-output layers (the last layer no longer reads the final norm), reply masks shared with training.
EVAL_CODE_VERSION = "4"
CLASSIFIER_FILE = "classifier.npz"
ACTIVATION_FILE = "activation_vector.npy"
EVAL_FILE = "evaluation.json"
MIN_PROBE_ROWS = 5


def _answers(conversations: Sequence[list[dict[str, str]]]) -> list[str]:
    return [c[-1]["content"] for c in conversations if c and c[-1]["role"] == "assistant"]


def _sample(items: list, count: int, seed: int) -> list:
    if len(items) <= count:
        return list(items)
    order = np.random.default_rng(seed).permutation(len(items))[:count]
    return [items[i] for i in sorted(order)]


def baseline_refs(store: ArtifactStore, source_model: str) -> list[PersonaRef]:
    """The baseline files of ``source_model`` materialised by ``roles/baseline_dataset``."""
    refs = []
    for name in sorted(BASELINE_ROLES):
        ref = PersonaRef(ROLES, source_model, name)
        if (dataset_folder(store, ref) / DATASET_FILE).is_file():
            refs.append(ref)
    return refs


BASELINE_FILE = "baseline_file"
IN_FILE_ROWS = "in_file_rows"


@dataclass
class Negatives:
    """Baseline conversations used as negatives, and where each came from.

    ``sources`` holds one entry per dataset read: ``{"source": "baseline_file" | "in_file_rows",
    "dataset": "<kind>/<source_model>/<name>", "rows": n}``; ``prints`` the fingerprints of
    those datasets, so an artifact built from them is rebuilt when they change.
    """

    conversations: list = field(default_factory=list)
    sources: list[dict[str, Any]] = field(default_factory=list)
    prints: list[str] = field(default_factory=list)

    def add(self, source: str, ref: PersonaRef, conversations: list, dataset_print: str) -> None:
        if conversations:
            self.conversations += conversations
            self.sources.append({"source": source, "dataset": f"{ref.kind.name}/{ref.partition_key}", "rows": len(conversations)})
            self.prints.append(dataset_print)

    def extend(self, other: "Negatives") -> None:
        self.conversations += other.conversations
        self.sources += other.sources
        self.prints += other.prints

    def summary(self, used: int | None = None) -> dict[str, Any]:
        """What the metadata shows: which kinds of source were read, rows per source, rows available (and used)."""
        kinds = sorted({s["source"] for s in self.sources})
        summary = {
            "sources": kinds,
            "rows_by_source": {s: sum(e["rows"] for e in self.sources if e["source"] == s) for s in kinds},
            "datasets": self.sources,
            "rows_available": len(self.conversations),
        }
        return summary if used is None else {**summary, "rows_used": used}


def _expected_baselines(refs: Sequence[PersonaRef]) -> str:
    models = sorted({ref.source_model for ref in refs})
    files = " or ".join(f"{{model}}/{path}" for path in ("responses/default.jsonl", f"{ROLES.directory}/responses/0_default.jsonl",
                                                         f"{ROLES.directory}/responses/1_default.jsonl"))
    labels = "; ".join(f"{kind.name}: {', '.join(repr(label) for label in kind.baseline_labels)}"
                       for kind in sorted({ref.kind for ref in refs}, key=lambda k: k.name))
    return (
        f"expected baseline files of source model {', '.join(map(repr, models))} ({files}, read by "
        f"roles/baseline_dataset), or baseline rows inside the persona's own responses file ({labels}; "
        "persona-subspace roles/2_responses.py writes 'default' rows with its include-default option on, "
        "traits/2_responses.py writes 'neutral' rows)"
    )


def baseline_file_negatives(store: ArtifactStore, source_model: str) -> Negatives:
    """The rows of every baseline file of ``source_model`` (empty when it has none)."""
    negatives = Negatives()
    for ref in baseline_refs(store, source_model):
        manifest = store.load_manifest(dataset_folder(store, ref), verify=False)
        negatives.add(BASELINE_FILE, ref, load_persona_dataset(store, ref)["messages"].to_list(), manifest["fingerprint"])
    return negatives


def in_file_negatives(store: ArtifactStore, ref: PersonaRef) -> Negatives:
    """The persona's own baseline-labelled rows (roles ``default``, traits ``neutral``/``default``)."""
    negatives = Negatives()
    manifest = store.load_manifest(dataset_folder(store, ref), verify=False)
    negatives.add(IN_FILE_ROWS, ref, load_baseline_rows(store, ref)["messages"].to_list(), manifest["fingerprint"])
    return negatives


def persona_negatives(store: ArtifactStore, ref: PersonaRef, files: Negatives | None = None) -> Negatives:
    """Negatives for one persona: its source model's baseline files, then its own baseline rows.

    Both are the assistant answering without the persona; baseline files are those of
    the assistant-axis layout and older persona-subspace trees, in-file rows those of the
    current persona-subspace writers. ``files`` reuses baseline files already read.
    Raises MissingBaselineError, saying what was expected, when neither exists.
    """
    negatives = Negatives()
    negatives.extend(files if files is not None else baseline_file_negatives(store, ref.source_model))
    negatives.extend(in_file_negatives(store, ref))
    if not negatives.conversations:
        labels = sorted(load_persona_dataset(store, ref)["label"].unique().to_list())
        raise MissingBaselineError(
            f"{ref.kind.name}/{ref.partition_key}: no baseline rows to use as negatives: {_expected_baselines([ref])}; "
            f"its dataset has only labels {labels} and no baseline file of {ref.source_model!r} is materialised"
        )
    return negatives


def kind_negatives(store: ArtifactStore, refs: Sequence[PersonaRef]) -> Negatives:
    """Negatives for a whole kind: every source model's baseline files and every persona's own baseline rows.

    Raises MissingBaselineError naming the source models that have neither.
    """
    negatives = Negatives()
    by_model: dict[str, list[PersonaRef]] = {}
    for ref in refs:
        by_model.setdefault(ref.source_model, []).append(ref)
    missing = []
    for model, model_refs in sorted(by_model.items()):
        found = baseline_file_negatives(store, model)
        for ref in model_refs:
            found.extend(in_file_negatives(store, ref))
        if not found.conversations:
            missing.append(model)
        negatives.extend(found)
    if missing:
        raise MissingBaselineError(
            f"no baseline rows to use as negatives for source model(s) {missing}: "
            f"{_expected_baselines([r for r in refs if r.source_model in missing])}"
        )
    return negatives


def _split_print(store: ArtifactStore, ref: PersonaRef) -> str:
    return store.load_manifest(split_folder(store, ref), verify=False)["fingerprint"]


# ---- persona classifier ---------------------------------------------------------------

def classifier_folder(store: ArtifactStore, kind: PersonaKind) -> Path:
    return store.folder(kind.name, "persona_classifier")


def materialize_persona_classifier(
    kind: PersonaKind, refs: Sequence[PersonaRef], store: ArtifactStore, encoder: Any, encoder_name: str,
    per_class: int = 80, seed: int = 0,
) -> ArtifactResult:
    """Which persona wrote this? Trained on each persona's training answers and the baselines' answers.

    The baseline class samples ``per_class`` answers from ``kind_negatives`` (baseline files
    and the personas' own baseline rows); raises MissingBaselineError when a source model has neither.
    """
    negatives = kind_negatives(store, refs)
    key = fingerprint({
        "code": EVAL_CODE_VERSION, "splits": {r.partition_key: _split_print(store, r) for r in refs},
        "baselines": negatives.prints, "encoder": encoder_name, "per_class": per_class, "seed": seed,
    })
    folder = classifier_folder(store, kind)
    existing = store.current_manifest(folder, key)
    if existing is not None:
        return ArtifactResult(folder, existing, skipped=True)
    texts = {ref.partition_key: _sample(_answers(load_training_split(store, ref)[0]["messages"].to_list()), per_class, seed) for ref in refs}
    texts = {name: answers for name, answers in texts.items() if answers}
    texts[BASELINE_CLASS] = _sample(_answers(negatives.conversations), per_class, seed)
    classifier, info = PersonaClassifier.fit(texts, encoder, seed=seed)
    info["baselines"] = negatives.summary(used=len(texts[BASELINE_CLASS]))
    manifest = store.write_artifact(folder, {CLASSIFIER_FILE: lambda p: _save_npz(classifier, p)}, fingerprint_value=key, details=info)
    return ArtifactResult(folder, manifest, skipped=False)


def _save_npz(classifier: PersonaClassifier, path: Path) -> None:
    # np.savez appends ".npz" to names without it; write through a handle to keep the temp name.
    with open(path, "wb") as handle:
        classifier.save(handle)


def load_persona_classifier(store: ArtifactStore, kind: PersonaKind) -> tuple[PersonaClassifier, str]:
    folder = classifier_folder(store, kind)
    manifest = store.load_manifest(folder)
    return PersonaClassifier.load(folder / CLASSIFIER_FILE), manifest["fingerprint"]


# ---- activation (difference-of-means) vectors -----------------------------------------

def activation_folder(store: ArtifactStore, ref: PersonaRef) -> Path:
    return store.folder(ref.kind.name, "persona_activation_vector", ref.source_model, ref.name)


def materialize_activation_vectors(
    refs: Sequence[PersonaRef], store: ArtifactStore, model: Any, tokenizer: Any, model_name: str,
    rows: int = 256, seed: int = 0, log: Callable[[str], None] = print,
) -> dict[str, ArtifactResult]:
    """Mean reply activation of each persona's training split minus that of its negatives, at the vector's layer.

    The negatives are ``persona_negatives``: the source model's baseline files and the
    persona's own baseline rows, ``rows`` of them sampled with ``seed``.
    """
    from steering_assets.models.loading import padding_token_id
    from steering_assets.steering.export import ModelShape, export_writers
    from steering_assets.steering.vectors import read_vector

    padding_token_id(tokenizer, model_name)  # before any work: batches need a pad (or EOS) token
    shape = ModelShape.of(model)
    results: dict[str, ArtifactResult] = {}
    # Personas with the same negatives (baseline files only) share one baseline mean per layer.
    baseline_means: dict[tuple[tuple[str, ...], int], np.ndarray] = {}
    files = {model: baseline_file_negatives(store, model) for model in {ref.source_model for ref in refs}}
    for ref in refs:
        _, vector_config = read_vector(vector_folder(store, ref))
        layer = int(vector_config["layer"])
        negatives = persona_negatives(store, ref, files[ref.source_model])
        baseline = negatives.conversations
        key = fingerprint({"code": EVAL_CODE_VERSION, "split": _split_print(store, ref), "baselines": negatives.prints,
                           "model": model_name, "layer": layer, "rows": rows, "seed": seed})
        folder = activation_folder(store, ref)
        existing = store.current_manifest(folder, key)
        if existing is not None:
            results[ref.partition_key] = ArtifactResult(folder, existing, skipped=True)
            continue
        mean_key = (tuple(negatives.prints), layer)
        if mean_key not in baseline_means:
            baseline_means[mean_key] = assistant_mean_hidden(
                model, tokenizer, _sample(baseline, rows, seed), layer, model_name=model_name).mean(0)
        train = load_training_split(store, ref)[0]["messages"].to_list()
        persona_mean = assistant_mean_hidden(model, tokenizer, _sample(train, rows, seed), layer, model_name=model_name).mean(0)
        vector = (persona_mean - baseline_means[mean_key]).astype(np.float32)
        log(f"{ref.partition_key}: activation vector at layer {layer}, norm {np.linalg.norm(vector):.3f}")
        exports, not_exported = export_writers(vector, layer, shape)
        for name, reason in not_exported.items():
            log(f"{ref.partition_key}: {name} not written: {reason}")
        manifest = store.write_artifact(
            folder,
            {ACTIVATION_FILE: lambda p, v=vector: _save_npy(v, p), **exports},
            fingerprint_value=key,
            details={"layer": layer, "norm": float(np.linalg.norm(vector)), "persona_rows": min(rows, len(train)),
                     "baseline_rows": min(rows, len(baseline)), "baselines": negatives.summary(used=min(rows, len(baseline))),
                     "exports": sorted(exports), "not_exported": not_exported},
        )
        results[ref.partition_key] = ArtifactResult(folder, manifest, skipped=False)
    return results


def _save_npy(array: np.ndarray, path: Path) -> None:
    with open(path, "wb") as handle:
        np.save(handle, array, allow_pickle=False)


def load_activation_vector(store: ArtifactStore, ref: PersonaRef) -> np.ndarray:
    folder = activation_folder(store, ref)
    store.load_manifest(folder)
    return np.load(folder / ACTIVATION_FILE, allow_pickle=False)


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
        positives = _sample([r["messages"] for r in kept], config.held_out_rows, seed)
        if len(positives) < MIN_PROBE_ROWS:
            # Every kept reply went into training (a persona short of its budget): an honest probe is impossible.
            return {"skipped": f"only {len(positives)} held-out replies (training used the rest)"}
        probe_negatives = _sample(baseline, len(positives), seed)
        baselines["probe_negatives"] = len(probe_negatives)
        return projection_classifier(
            assistant_mean_hidden(model, tokenizer, positives, layer, config.batch_size),
            assistant_mean_hidden(model, tokenizer, probe_negatives, layer, config.batch_size),
            direction, seed,
        )
    rows = _sample(held_out.to_dicts(), config.held_out_rows, seed)
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
    residual_norm = typical_residual_norm(model, tokenizer, _sample(baseline, 32, seed), layer, model_name=model_name)
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
