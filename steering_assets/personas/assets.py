"""Dagster wrappers for the persona family: rollouts -> dataset -> training split, per kind.

Each kind (roles, traits) gets the same three assets under its own key prefix and
partition set, so "backfill all roles" is one selection: ``roles/*``.
"""


from typing import Any, Iterator, Optional

import dagster as dg
import polars as pl
from pydantic import Field

from steering_assets.core.artifacts import ArtifactResult, fingerprint
from steering_assets.core.asset_results import reported_as_failure
from steering_assets.core.metadata import md_bar_chart, md_counts, md_table
from steering_assets.formats.rollouts import ROLES, PersonaKind, PersonaRef, RolloutFormatError, rollout_data_version
from steering_assets.partitions.personas import PARTITIONS_BY_KIND, rollout_scores_key, rollouts_asset_key
from steering_assets.persona_model.assets import PERSONA_MODEL_KEY
from steering_assets.personas.budget import BudgetConfig, SelectionConfig, SelectionError, check_selection
from steering_assets.personas.dataset import dataset_schema
from steering_assets.personas.materialize import DATASET_FILE, materialize_persona_dataset, materialize_training_split
from steering_assets.resources.language_model import ModelSource
from steering_assets.resources.rollouts import PersonaRollouts
from steering_assets.resources.storage import ArtifactStorage

# A persona-dataset backfill chunk: this many personas share one run (one process start, one tokenizer load).
DATASETS_PER_RUN = 25
DATA_VERSION_TAG = "dagster/data_version"

BUDGET_CHECK = "train_budget_reached"
SURVIVORS_CHECK = "examples_survive_filtering"
INSTRUCTION_CHECK = "training_rows_exclude_instruction"


class TrainingSplitConfig(dg.Config):
    """Selection and token-budget settings (defaults in docs/inputs.md#selection-defaults)."""

    train_tokens: int = Field(default=100_000, gt=0, description="Train budget in chat-template tokens.")
    validation_tokens: int = Field(default=10_000, ge=0, description="Validation budget in chat-template tokens.")
    seed: int = Field(default=42, description="Shuffle seed for the greedy budget fill.")
    batch_size: int = Field(default=256, gt=0, description="Conversations tokenised per batch.")
    min_score: Optional[int] = Field(default=None, description="Keep scores >= this (default: roles 3, traits 75).")
    keep_labels: Optional[list[str]] = Field(default=None, description='Labels to keep (default ["pos"]).')
    held_out_questions: int = Field(
        default=0, ge=0, description="Questions (seeded draw) whose rows enter neither split: the judged evaluation's "
        "instructions when the budgets would otherwise take every question (small rollout sets).")

    def budget(self) -> BudgetConfig:
        return BudgetConfig(self.train_tokens, self.validation_tokens, self.seed, self.batch_size, self.held_out_questions)

    def selection(self, kind: PersonaKind) -> SelectionConfig:
        default = SelectionConfig.defaults_for(kind)
        selection = SelectionConfig(
            default.min_score if self.min_score is None else self.min_score,
            default.keep_labels if self.keep_labels is None else tuple(self.keep_labels),
        )
        try:
            check_selection(selection, kind)
        except SelectionError as err:
            raise dg.Failure(description=f"{kind.name} training split settings: {err}", allow_retries=False) from err
        return selection


def _column_schema(kind: PersonaKind, with_length: bool = False) -> dg.TableSchema:
    columns = [dg.TableColumn(name, str(dtype)) for name, dtype in dataset_schema(kind.column).items()]
    if with_length:
        columns.append(dg.TableColumn("length", "Int64", description="chat-template tokens"))
    return dg.TableSchema(columns=columns)


def _preview(folder_file, kind: PersonaKind, rows: int = 5) -> dg.MetadataValue:
    frame = pl.read_parquet(folder_file, n_rows=rows)
    table = []
    for row in frame.iter_rows(named=True):
        answer = next((m["content"] for m in row["messages"] if m["role"] == "assistant"), "")
        table.append((row["label"], row["extract_score"], row["question"], answer[:100] + ("…" if len(answer) > 100 else "")))
    return dg.MetadataValue.md(md_table(["label", "score", "question", "answer"], table))


def dataset_metadata(result: ArtifactResult, kind: PersonaKind) -> dict[str, Any]:
    details = result.details
    join = details["join"]
    older = {
        "lines without prompt_index (read as prompt 0)": join["prompt_index_assumed_0"],
        "lines with pair_index (read as prompt_index)": join["prompt_index_from_pair_index"],
        "lines without question (taken from the user turn)": join["questions_from_user_turn"],
    }
    older.update({f"score keys of shape {shape}": n for shape, n in join["score_key_shapes"].items() if shape != "label_p_q"})
    return {
        "dagster/row_count": details["rows"],
        "dagster/column_schema": _column_schema(kind),
        "path": dg.MetadataValue.path(str(result.folder / DATASET_FILE)),
        "layout": join["layout"],
        "responses_file": dg.MetadataValue.path(join["responses_path"]),
        "scores_file": dg.MetadataValue.path(join["scores_path"]) if join["scores_path"] else "none (baseline)",
        "score_histogram": md_bar_chart(details["score_histogram"], "score"),
        "rows_by_label": dg.MetadataValue.json(details["labels"]),
        "baseline_rows": join["baseline_rows"],
        "instruction_removed_from_user_turn": join["instruction_removed"],
        "read_from_older_shapes": md_counts({k: v for k, v in older.items() if v}),
        "refusals": join["refusals"],
        "responses_without_score": join["responses_without_score"],
        "scores_without_response": join["scores_without_response"],
        "preview": _preview(result.folder / DATASET_FILE, kind),
        "reused_existing_artifact": result.skipped,
    }


def split_metadata(result: ArtifactResult) -> dict[str, Any]:
    d = result.details
    return {
        "dagster/row_count": d["train_rows"] + d["validation_rows"],
        "train_rows": d["train_rows"],
        "validation_rows": d["validation_rows"],
        "train_tokens": d["train_tokens"],
        "validation_tokens": d["validation_tokens"],
        "train_budget": d["train_budget"],
        "train_budget_filled": dg.MetadataValue.float(round(d["train_tokens"] / d["train_budget"], 4)),
        "kept_examples": d["train_rows"] + d["validation_rows"],
        "candidates": d["candidates"],
        "rows_tokenised": d["rows_tokenised"],
        "dropped_examples": dg.MetadataValue.int(sum(d["dropped"].values())),
        "dropped_by_reason": md_counts(d["dropped"]),
        "kept_score_histogram": md_bar_chart(d["kept_score_histogram"], "score"),
        "kept_rows_by_label": dg.MetadataValue.json(d["kept_rows_by_label"]),
        "instruction_removed_from_user_turn": d["instruction_removed_rows"],
        "rows_starting_with_instruction": d["rows_starting_with_instruction"],
        "selection": dg.MetadataValue.json(d["selection"]),
        "path": dg.MetadataValue.path(str(result.folder)),
        "reused_existing_artifact": result.skipped,
    }


def split_check_results(details: dict[str, Any]) -> list[dg.AssetCheckResult]:
    kept = details["train_rows"] + details["validation_rows"]
    return [
        dg.AssetCheckResult(
            check_name=BUDGET_CHECK,
            passed=bool(details["train_budget_reached"]),
            severity=dg.AssetCheckSeverity.WARN,
            description=f"{details['train_tokens']} of {details['train_budget']} train tokens",
            metadata={"train_tokens": details["train_tokens"], "train_budget": details["train_budget"]},
        ),
        dg.AssetCheckResult(
            check_name=SURVIVORS_CHECK,
            passed=kept > 0,
            severity=dg.AssetCheckSeverity.ERROR,
            description=f"{kept} examples kept of {details['dataset_rows']}",
            metadata={"kept": kept, "dropped": dg.MetadataValue.json(details["dropped"])},
        ),
        dg.AssetCheckResult(
            check_name=INSTRUCTION_CHECK,
            passed=details["rows_starting_with_instruction"] == 0,
            severity=dg.AssetCheckSeverity.WARN,
            description=(
                f"{details['rows_starting_with_instruction']} of {kept} training rows still start with their persona's "
                f"instruction ({details['instruction_removed_rows']} had it removed from the user turn)"
            ),
            metadata={
                "rows_starting_with_instruction": details["rows_starting_with_instruction"],
                "examples": dg.MetadataValue.json(details["rows_starting_with_instruction_examples"]),
                "instruction_removed_from_user_turn": details["instruction_removed_rows"],
            },
        ),
    ]


def build_persona_assets(kind: PersonaKind, datasets_per_run: int = DATASETS_PER_RUN) -> list:
    """The rollouts -> dataset -> training-split assets of one persona kind."""
    return [_persona_rollouts_asset(kind), _persona_datasets_asset(kind, datasets_per_run)]


def _persona_rollouts_asset(kind: PersonaKind) -> dg.SourceAsset:
    partitions_def = PARTITIONS_BY_KIND[kind.name]

    @dg.observable_source_asset(
        key=rollouts_asset_key(kind),
        partitions_def=partitions_def,
        group_name=f"{kind.name}_personas",
        description=(
            f"Raw {kind.name} rollouts under PERSONA_DATA_ROOT: {kind.directory}/responses/<name>.jsonl and "
            f"{kind.directory}/extract_scores/<name>.json (persona-subspace)"
            + (", or responses/<name>.jsonl and scores/<name>.json (assistant-axis)" if kind is ROLES else "")
            + ". The data version is a hash of both files' bytes."
        ),
    )
    def persona_rollouts(context: dg.OpExecutionContext, rollouts: PersonaRollouts) -> dg.DataVersionsByPartition:
        versions = {}
        for key in context.instance.get_dynamic_partitions(partitions_def.name):
            ref = PersonaRef.from_partition_key(kind, key)
            try:
                if ref.responses_path(rollouts.root).is_file():
                    versions[key] = rollout_data_version(ref, rollouts.root)
            except RolloutFormatError as err:  # e.g. the persona now has files in two layouts
                context.log.warning(f"{key}: not observed: {err}")
        return dg.DataVersionsByPartition(versions)

    return persona_rollouts


def _split_check_specs(split_key: dg.AssetKey, partitions_def: dg.PartitionsDefinition) -> list[dg.AssetCheckSpec]:
    # Checks carry the asset's partitions: each persona keeps its own status in the UI.
    return [
        dg.AssetCheckSpec(BUDGET_CHECK, asset=split_key, partitions_def=partitions_def,
                          description="WARN when the train budget cannot be filled."),
        dg.AssetCheckSpec(SURVIVORS_CHECK, asset=split_key, blocking=True, partitions_def=partitions_def,
                          description="ERROR when no example survives filtering."),
        dg.AssetCheckSpec(
            INSTRUCTION_CHECK, asset=split_key, partitions_def=partitions_def,
            description=("WARN when training rows' user turns still start with their persona instruction "
                         "(the steering vector would learn what the prompt already says)."),
        ),
    ]


def _persona_datasets_asset(kind: PersonaKind, datasets_per_run: int) -> dg.AssetsDefinition:
    partitions_def = PARTITIONS_BY_KIND[kind.name]
    rollouts_key = rollouts_asset_key(kind)
    dataset_key = dg.AssetKey([kind.name, "persona_dataset"])
    split_key = dg.AssetKey([kind.name, "persona_training_split"])
    group = f"{kind.name}_personas"

    # Dataset and training split are one op so that a backfill chunk (one run, many personas,
    # one process start and one tokenizer load) builds both per persona and reports each
    # persona's outcome on its own: a bad file fails its persona's dataset and split, never
    # the rest of the chunk. The op keeps the split's name, so run config written for
    # `<kind>__persona_training_split` still applies.
    @dg.multi_asset(
        name=f"{kind.name}__persona_training_split",
        specs=[
            dg.AssetSpec(
                dataset_key,
                deps=[rollouts_key, rollout_scores_key(kind), PERSONA_MODEL_KEY],
                partitions_def=partitions_def,
                group_name=group,
                kinds={"polars", "parquet"},
                code_version="1",
                description=(
                    f"Every {kind.column} response joined with its judge score, in the processed schema "
                    "(system turns dropped, an instruction the writer put in the user turn removed; baseline rows "
                    "kept with their label). Load with polars or datasets.load_dataset('parquet', ...)."
                ),
                skippable=True,  # a persona-subspace tree's default partition: its rows live in the role files
            ),
            dg.AssetSpec(
                split_key,
                deps=[dataset_key],
                partitions_def=partitions_def,
                group_name=group,
                kinds={"polars", "parquet"},
                code_version="1",
                description=(
                    "Score-filtered, seeded, token-budgeted train and validation splits; lengths are counted with "
                    "the target model's chat template (column `length`). A baseline role partition (the default "
                    "assistant) has no split: it is never training data."
                ),
                skippable=True,
            ),
        ],
        check_specs=_split_check_specs(split_key, partitions_def),
        partitions_def=partitions_def,
        can_subset=True,
        backfill_policy=dg.BackfillPolicy.multi_run(max_partitions_per_run=datasets_per_run),
    )
    def persona_datasets(
        context: dg.AssetExecutionContext,
        config: TrainingSplitConfig,
        rollouts: PersonaRollouts,
        storage: ArtifactStorage,
        model_source: ModelSource,
    ):
        store = storage.store()
        selected = context.selected_asset_keys
        keys = list(context.partition_keys)
        results: dict[str, dict[dg.AssetKey, ArtifactResult]] = {}
        failures: dict[str, str] = {}
        for key in keys:
            try:
                with reported_as_failure(key):
                    results[key] = _materialize_one(context, kind, key, rollouts, store, model_source, config, selected)
            except dg.Failure as failure:
                if len(keys) == 1:
                    raise
                failures[key] = failure.description
                context.log.error(failure.description)
        if len(keys) == 1:
            yield from _single_partition_results(results[keys[0]], kind)
            return
        yield from _chunk_results(context, kind, keys, results, failures)

    return persona_datasets


BASELINE_NO_SPLIT = "a baseline role: its replies are negatives and the default side of the assistant axis, never training data"
BASELINE_IN_ROLE_FILES = ("no baseline file: the default assistant's replies are the 'default' rows inside each role's "
                          "persona_dataset (persona-subspace's include-default), which its role vector reads")
NOT_COMPUTED = {"persona_dataset": BASELINE_IN_ROLE_FILES, "persona_training_split": BASELINE_NO_SPLIT}


def _has_responses(ref: PersonaRef, root: Any) -> bool:
    try:
        return ref.responses_path(root).is_file()
    except RolloutFormatError:
        return True  # two layouts: the dataset build names both files


def _materialize_one(context, kind, key, rollouts, store, model_source, config, selected) -> dict:
    ref = PersonaRef.from_partition_key(kind, key)
    dataset_key, split_key = dg.AssetKey([kind.name, "persona_dataset"]), dg.AssetKey([kind.name, "persona_training_split"])
    out = {}
    if dataset_key in selected and ref.is_baseline and not _has_responses(ref, rollouts.root):
        context.log.info(f"{key}: no dataset: {BASELINE_IN_ROLE_FILES}")
    elif dataset_key in selected:
        result = out[dataset_key] = materialize_persona_dataset(ref, rollouts.root, store)
        join = result.details["join"]
        if join["responses_without_score"] or join["scores_without_response"]:
            context.log.warning(
                f"{key}: {join['responses_without_score']} responses have no score and "
                f"{join['scores_without_response']} scores have no response "
                f"(e.g. {join['orphan_score_examples'][:3]}); unscored rows are kept but never trained on"
            )
    if split_key in selected and ref.is_baseline:
        context.log.info(f"{key}: no training split: {BASELINE_NO_SPLIT}")
    elif split_key in selected:
        result = out[split_key] = materialize_training_split(
            ref, store, model_source.get_tokenizer(), config.budget(), config.selection(kind)
        )
        d = result.details
        context.log.info(
            f"{key}: {d['train_rows']} train rows / {d['train_tokens']} tokens, "
            f"{d['validation_rows']} validation rows / {d['validation_tokens']} tokens"
        )
    return out


def _metadata(key: dg.AssetKey, result: ArtifactResult, kind: PersonaKind) -> dict[str, Any]:
    return dataset_metadata(result, kind) if key.path[-1] == "persona_dataset" else split_metadata(result)


def _single_partition_results(results: dict, kind: PersonaKind) -> Iterator:
    for key, result in results.items():
        checks = split_check_results(result.details) if key.path[-1] == "persona_training_split" else []
        yield dg.MaterializeResult(
            asset_key=key,
            metadata=_metadata(key, result, kind),
            check_results=checks,
            data_version=dg.DataVersion(result.manifest["fingerprint"][:32]),
        )


def _chunk_results(context, kind, keys, results, failures) -> Iterator:
    """A chunk's outcome per persona: each good one's own materialization and checks, then the failures.

    When every persona succeeded the range output comes first (it records the whole range),
    so each persona's own event, with its own numbers, is its latest. When some failed, only
    the good personas are recorded and the step fails naming the bad ones: Dagster then marks
    exactly those partitions failed (asset pages, backfill page) and the rest materialised.
    """
    if not failures:
        # Dataset before split: a multi-asset yields its outputs in dependency order.
        for key in sorted(context.selected_asset_keys, key=lambda k: k.path[-1] != "persona_dataset"):
            yield dg.MaterializeResult(asset_key=key, metadata={"chunk_partitions": dg.MetadataValue.json(keys)})
    for partition, per_asset in results.items():
        for key, result in per_asset.items():
            yield dg.AssetMaterialization(
                asset_key=key, partition=partition, metadata=_metadata(key, result, kind),
                tags={DATA_VERSION_TAG: result.manifest["fingerprint"][:32]},
            )
            if key.path[-1] == "persona_training_split":
                for check in split_check_results(result.details):
                    yield dg.AssetCheckEvaluation(
                        asset_key=key, check_name=check.check_name, passed=check.passed, partition=partition,
                        severity=check.severity, description=check.description, metadata=check.metadata,
                        blocking=check.check_name == SURVIVORS_CHECK,
                    )
        for key in sorted(context.selected_asset_keys - set(per_asset), key=lambda k: k.path[-1] != "persona_dataset"):
            # A baseline role: no split (and no dataset when its replies live inside the role files).
            yield dg.AssetMaterialization(asset_key=key, partition=partition, metadata={"not_computed": NOT_COMPUTED[key.path[-1]]})
    if failures:
        raise dg.Failure(
            description=f"{len(failures)} of {len(keys)} {kind.name} in this run failed (the others are materialised): "
            + "; ".join(failures.values()),
            metadata={"failed_partitions": dg.MetadataValue.json(failures)},
            allow_retries=False,
        )



def build_baseline_assets() -> list:
    """Baseline roles (0_default, 1_default, default): no scores, not training data, kept as negatives."""
    source_key = dg.AssetKey(["roles", "baseline_rollouts"])

    @dg.observable_source_asset(
        key=source_key,
        group_name="roles_personas",
        description="Baseline-role rollouts (0_default, 1_default, default) of every source model.",
    )
    def baseline_rollouts(rollouts: PersonaRollouts) -> dg.DataVersion:
        refs = rollouts.discover(ROLES).baselines
        versions = {ref.partition_key: rollout_data_version(ref, rollouts.root) for ref in refs}
        return dg.DataVersion(fingerprint(versions)[:32])

    @dg.asset(
        key=["roles", "baseline_dataset"],
        deps=[source_key],
        group_name="roles_personas",
        kinds={"polars", "parquet"},
        code_version="1",
        description=(
            "Baseline files of every source model in the processed schema: negatives for the steering assets, "
            "with each persona's own baseline rows (roles 'default', traits 'neutral') from its persona_dataset."
        ),
    )
    def baseline_dataset(
        context: dg.AssetExecutionContext, rollouts: PersonaRollouts, storage: ArtifactStorage
    ) -> dg.MaterializeResult:
        store = storage.store()
        refs = rollouts.discover(ROLES).baselines
        rows = []
        for ref in refs:
            with reported_as_failure(ref.partition_key):
                result = materialize_persona_dataset(ref, rollouts.root, store)
            rows.append((ref.source_model, ref.name, result.details.get("layout", ""), result.details["rows"],
                         str(result.folder / DATASET_FILE)))
        if not refs:
            context.log.warning(
                f"no baseline files (responses/default.jsonl, roles_240/responses/0_default.jsonl or 1_default.jsonl) "
                f"under {rollouts.root}; the steering assets take their negatives from each persona's own baseline rows "
                "(roles 'default', traits 'neutral'/'default') in its persona_dataset, and fail for a persona with none"
            )
        return dg.MaterializeResult(
            metadata={
                "baselines": dg.MetadataValue.md(md_table(["source model", "baseline", "layout", "rows", "path"], rows)),
                "baseline_files": len(rows),
                "dagster/row_count": sum(r[3] for r in rows),
            }
        )

    return [baseline_rollouts, baseline_dataset]
