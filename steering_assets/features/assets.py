"""Dagster wrappers for the interpretability stage, partitioned by concept."""

from pathlib import Path
from typing import Optional

import dagster as dg
from pydantic import Field

from steering_assets.core.asset_results import reported_as_failure
from steering_assets.core.metadata import md_table, png_markdown
from steering_assets.partitions.concepts import CONCEPT_PARTITIONS
from steering_assets.persona_model.assets import PERSONA_MODEL_KEY
from steering_assets.resources.concepts import ConceptSentences
from steering_assets.resources.encoder import SentenceEncoderResource
from steering_assets.resources.language_model import LanguageModelResource
from steering_assets.resources.sae import SAEResource
from steering_assets.resources.storage import ArtifactStorage

GROUP = "concept_features"


class ClassifierDatasetSpecConfig(dg.Config):
    strategy: str
    layers: Optional[str] = None
    target_layer: Optional[int] = None
    target_feature: Optional[int] = None
    normalize: str = "standardize"


class ClassifierDatasetsConfig(dg.Config):
    specs: list[ClassifierDatasetSpecConfig] = Field(default=[], description="Datasets to build (empty: the default set).")


class TraitClassifiersConfig(dg.Config):
    models: list[str] = Field(default=["logistic", "ridge", "linear_svm", "mlp"])
    folds: int = Field(default=5, ge=2)
    seed: int = 0


@dg.asset(
    key=["concepts", "sentence_features"], deps=[PERSONA_MODEL_KEY], partitions_def=CONCEPT_PARTITIONS, group_name=GROUP, pool="gpu",
    kinds={"pytorch", "numpy"}, code_version="1",
    description="One NPZ per labelled sentence: embeddings, every layer's hidden states and SAE activations for each prefix.",
)
def sentence_features(
    context: dg.AssetExecutionContext, storage: ArtifactStorage, language_model: LanguageModelResource,
    sentence_encoder: SentenceEncoderResource, saes: SAEResource, concepts: ConceptSentences,
) -> dg.MaterializeResult:
    from steering_assets.features.materialize import materialize_sentence_features

    concept = context.partition_key
    with reported_as_failure(concept):
        model = language_model.get_model()
        sae_set = saes.load(model.config.hidden_size, model.config.num_hidden_layers)
        result = materialize_sentence_features(
            concept, Path(concepts.root), storage.store(), model, language_model.get_tokenizer(),
            sentence_encoder.get_encoder(), sae_set, Path(saes.config_path), language_model.model_name, log=context.log.info,
        )
    d = result.details
    not_read = concepts.survey().skipped_lines()
    for line in not_read:
        context.log.warning(f"concepts root entry not read: {line}")
    return dg.MaterializeResult(metadata={
        "concept_file": dg.MetadataValue.path(d.get("source", str(concepts.source(concept)))),
        "other_entries_not_read": dg.MetadataValue.json(not_read),
        "sentences": d["sentences"], "prefixes": d["prefixes"], "sae_layers": dg.MetadataValue.json(d["layers"]),
        "sentences_per_label": dg.MetadataValue.json(d["labels"]), "path": dg.MetadataValue.path(str(result.folder)),
        "reused_existing_artifact": result.skipped,
    })


@dg.asset(
    key=["concepts", "top_features"], deps=[sentence_features], partitions_def=CONCEPT_PARTITIONS, group_name=GROUP,
    code_version="1", description="SAE features ranked against the labels (Pearson, standardised gap, TPR-FPR), monotonic ones only.",
)
def top_features(context: dg.AssetExecutionContext, storage: ArtifactStorage) -> dg.MaterializeResult:
    from steering_assets.features.materialize import materialize_top_features

    with reported_as_failure(context.partition_key):
        result = materialize_top_features(context.partition_key, storage.store())
    rows = [(e["layer"], e["feature"], round(e["pearson"], 3), round(e["gap"], 2), round(e["tpr_minus_fpr"], 2),
             " / ".join(f"{m:.2f}" for m in e["means"])) for e in result.details["top"]]
    return dg.MaterializeResult(metadata={
        "ranked_features": dg.MetadataValue.md(md_table(["layer", "feature", "pearson", "gap", "TPR-FPR", "mean by label 0/1/2/3"], rows)),
        "path": dg.MetadataValue.path(str(result.folder)), "reused_existing_artifact": result.skipped,
    })


@dg.asset(
    key=["concepts", "feature_activation_graphs"], deps=[top_features], partitions_def=CONCEPT_PARTITIONS, group_name=GROUP,
    code_version="1", description="The top features' mean activation along the prefixes, one line per label (PNG).",
)
def feature_activation_graphs(context: dg.AssetExecutionContext, storage: ArtifactStorage) -> dg.MaterializeResult:
    from steering_assets.features.materialize import materialize_activation_graphs

    with reported_as_failure(context.partition_key):
        result = materialize_activation_graphs(context.partition_key, storage.store())
    images = {name.removesuffix(".png"): dg.MetadataValue.md(png_markdown((result.folder / name).read_bytes(), name))
              for name in result.details["graphs"]}
    return dg.MaterializeResult(metadata={**images, "path": dg.MetadataValue.path(str(result.folder))})


@dg.asset(
    key=["concepts", "classifier_datasets"], deps=[top_features], partitions_def=CONCEPT_PARTITIONS, group_name=GROUP,
    code_version="1", description="Classifier datasets (final tokens) for each configured strategy, with saved normalisation.",
)
def classifier_datasets(context: dg.AssetExecutionContext, config: ClassifierDatasetsConfig, storage: ArtifactStorage) -> dg.MaterializeResult:
    from steering_assets.features.datasets import DatasetSpec
    from steering_assets.features.materialize import materialize_classifier_datasets

    with reported_as_failure(context.partition_key):
        specs = [DatasetSpec(**spec.model_dump()) for spec in config.specs] or None
        result = materialize_classifier_datasets(context.partition_key, storage.store(), specs)
    rows = [(name, info["samples"], info["dims"]) for name, info in result.details["datasets"].items()]
    return dg.MaterializeResult(metadata={
        "datasets": dg.MetadataValue.md(md_table(["dataset", "samples", "input dims"], rows)),
        "path": dg.MetadataValue.path(str(result.folder)), "reused_existing_artifact": result.skipped,
    })


@dg.asset(
    key=["concepts", "trait_classifiers"], deps=[classifier_datasets], partitions_def=CONCEPT_PARTITIONS, group_name=GROUP,
    kinds={"sklearn"}, code_version="2",
    description="Every classifier on every dataset, stratified k-fold CV with in-fold normalisation; comparison table.",
)
def trait_classifiers(context: dg.AssetExecutionContext, config: TraitClassifiersConfig, storage: ArtifactStorage) -> dg.MaterializeResult:
    from steering_assets.features.materialize import materialize_trait_classifiers

    with reported_as_failure(context.partition_key):
        result = materialize_trait_classifiers(context.partition_key, storage.store(), config.models, config.folds, config.seed)
    rows = []
    for r in result.details["results"]:
        score = f"acc {r['accuracy']:.3f} F1 {r['f1']:.3f}" + (f" AUC {r['roc_auc']:.3f}" if "roc_auc" in r else "") if r["task"] == "classification" else f"R2 {r['r2']:.3f} MSE {r['mse']:.4f}"
        if r.get("not_converged_folds"):
            score += f" (did not converge in {r['not_converged_folds']}/{r['folds']} folds)"
        rows.append((r["strategy"], ",".join(map(str, r["layers"])) or "-", r["dataset"], r["model"], score))
    return dg.MaterializeResult(metadata={
        "comparison": dg.MetadataValue.md(md_table(["strategy", "layers", "dataset", "model", "cross-validated"], rows)),
        "best_models": dg.MetadataValue.json(result.details["best"]),
        "path": dg.MetadataValue.path(str(result.folder)), "reused_existing_artifact": result.skipped,
    })


FEATURE_ASSETS = [sentence_features, top_features, feature_activation_graphs, classifier_datasets, trait_classifiers]
