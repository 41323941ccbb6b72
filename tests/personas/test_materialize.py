import json

import datasets
import pytest

from steering_assets.core.artifacts import ArtifactStore
from steering_assets.formats.rollouts import ROLES, PersonaRef
from steering_assets.personas.budget import BudgetConfig, SelectionConfig
from steering_assets.personas.materialize import (
    DATASET_FILE,
    load_training_split,
    materialize_persona_dataset,
    materialize_training_split,
)
from tests.conftest import response_row, write_persona

COLUMNS = [
    "model", "role", "dataset_type", "system_prompt", "label", "prompt_index", "question_index",
    "question", "messages", "extract_score", "score_status", "instruction_removed",
]


@pytest.fixture
def persona(tmp_path):
    rows = [response_row(question_index=q, answer=f"Arr, answer number {q}.") for q in range(40)]
    write_persona(tmp_path / "data", "roles_240", "pirate", rows, {f"pos_p0_q{q}": 3 if q % 4 else 1 for q in range(40)})
    return PersonaRef(ROLES, "model-a", "pirate"), tmp_path / "data", ArtifactStore(tmp_path / "artifacts")


def test_dataset_is_parquet_loadable_with_datasets(persona):
    ref, data_root, store = persona
    result = materialize_persona_dataset(ref, data_root, store)
    assert result.folder == store.root / "roles" / "persona_dataset" / "model-a" / "pirate"
    loaded = datasets.load_dataset("parquet", data_files=str(result.folder / DATASET_FILE), split="train")
    assert loaded.column_names == COLUMNS
    assert loaded.num_rows == 40
    assert loaded[0]["messages"] == [
        {"role": "user", "content": "Question 0?"},
        {"role": "assistant", "content": "Arr, answer number 0."},
    ]
    assert result.details["score_histogram"] == {"1": 10, "3": 30}


def test_rerun_skips_unchanged_inputs_and_rebuilds_changed_ones(persona, tokenizer):
    ref, data_root, store = persona
    assert not materialize_persona_dataset(ref, data_root, store).skipped
    assert materialize_persona_dataset(ref, data_root, store).skipped
    budget = BudgetConfig(train_tokens=400, validation_tokens=100)
    assert not materialize_training_split(ref, store, tokenizer, budget).skipped
    assert materialize_training_split(ref, store, tokenizer, budget).skipped
    assert not materialize_training_split(ref, store, tokenizer, BudgetConfig(train_tokens=500, validation_tokens=100)).skipped

    scores_path = ref.scores_path(data_root)
    scores = json.loads(scores_path.read_text())
    scores["pos_p0_q0"] = 3
    scores_path.write_text(json.dumps(scores))
    rebuilt = materialize_persona_dataset(ref, data_root, store)
    assert not rebuilt.skipped and rebuilt.details["score_histogram"] == {"1": 9, "3": 31}
    split = materialize_training_split(ref, store, tokenizer, budget)
    assert not split.skipped


def test_split_respects_budgets_and_selection(persona, tokenizer):
    ref, data_root, store = persona
    materialize_persona_dataset(ref, data_root, store)
    result = materialize_training_split(ref, store, tokenizer, BudgetConfig(train_tokens=400, validation_tokens=100))
    train, validation = load_training_split(store, ref)
    assert train["length"].sum() <= 400 and validation["length"].sum() <= 100
    assert set(train["extract_score"]) == {3}
    assert result.details["dropped"]["below_threshold"] == 10
    lenient = materialize_training_split(
        ref, store, tokenizer, BudgetConfig(train_tokens=10_000), SelectionConfig(min_score=0, keep_labels=("pos",))
    )
    assert lenient.details["train_rows"] == 40 and not lenient.details["train_budget_reached"]


def test_split_needs_a_completed_dataset_and_refuses_baselines(persona, tokenizer):
    ref, data_root, store = persona
    from steering_assets.core.artifacts import ArtifactIntegrityError

    with pytest.raises(ArtifactIntegrityError, match="never completed"):
        materialize_training_split(ref, store, tokenizer, BudgetConfig())
    with pytest.raises(ValueError, match="baseline"):
        materialize_training_split(PersonaRef(ROLES, "model-a", "0_default"), store, tokenizer, BudgetConfig())
