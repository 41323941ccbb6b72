import copy

import numpy as np
import polars as pl
import pytest

from steering_assets.formats.rollouts import ROLES, TRAITS, PersonaRef
from steering_assets.personas.budget import (
    BudgetConfig,
    ChatTemplateMissingError,
    SelectionConfig,
    budget_split,
    build_training_split,
    chat_token_lengths,
    select_training_rows,
)
from steering_assets.personas.dataset import build_persona_dataset
from tests.conftest import response_row, write_persona
from tests.reference import chat_token_lengths_one_by_one
from tests.world import ROLES as RECORDED_ROLES
from tests.world import SOURCE_MODEL


@pytest.fixture
def trait_frame(tmp_path):
    rows = [response_row(label, p, q) for label in ("pos", "neg") for p in range(2) for q in range(3)]
    scores = {
        "pos_p0_q0": 90, "pos_p0_q1": 75, "pos_p0_q2": 74, "pos_p1_q0": "REFUSAL", "pos_p1_q1": 100,
        "neg_p0_q0": 95, "neg_p0_q1": 5, "neg_p0_q2": 3, "neg_p1_q0": 1, "neg_p1_q1": 2, "neg_p1_q2": 0,
    }  # pos_p1_q2 has no score
    write_persona(tmp_path, "traits_240", "humorous", rows, scores)
    frame, _ = build_persona_dataset(PersonaRef(TRAITS, "model-a", "humorous"), tmp_path)
    return frame


def test_trait_defaults_keep_positive_scores_of_75_and_up(trait_frame):
    kept, dropped = select_training_rows(trait_frame, SelectionConfig.defaults_for(TRAITS))
    assert sorted(kept["extract_score"].to_list()) == [75, 90, 100]
    assert set(kept["label"]) == {"pos"}
    assert dropped == {"wrong_label": 6, "refusal": 1, "missing_score": 1, "below_threshold": 1}


def test_role_defaults_keep_score_3_only(tmp_path):
    rows = [response_row(question_index=q) for q in range(5)]
    write_persona(tmp_path, "roles_240", "pirate", rows, {f"pos_p0_q{q}": q % 4 for q in range(4)})
    frame, _ = build_persona_dataset(PersonaRef(ROLES, "model-a", "pirate"), tmp_path)
    kept, dropped = select_training_rows(frame, SelectionConfig.defaults_for(ROLES))
    assert kept["question_index"].to_list() == [3]
    assert dropped == {"below_threshold": 3, "missing_score": 1}


def test_system_turns_are_dropped_from_messages(trait_frame):
    assert all(m["role"] != "system" for messages in trait_frame["messages"] for m in messages)
    assert trait_frame["system_prompt"][0] == "Be a pirate."


def test_batched_lengths_equal_one_by_one_chat_template(tokenizer, demo_workspace):
    frame, _ = build_persona_dataset(PersonaRef(ROLES, SOURCE_MODEL, "pirate"), demo_workspace.data_root)
    conversations = frame["messages"].to_list()[:300]
    batched = chat_token_lengths(tokenizer, conversations, batch_size=64)
    assert batched == chat_token_lengths_one_by_one(tokenizer, conversations)
    assert min(batched) > 20


def test_tokenizer_without_chat_template_is_refused(tokenizer):
    bare = copy.deepcopy(tokenizer)
    bare.chat_template = None
    with pytest.raises(ChatTemplateMissingError, match="has no chat template"):
        chat_token_lengths(bare, [[{"role": "user", "content": "hi"}]])


def test_budget_split_takes_seeded_rows_until_each_budget_is_filled():
    lengths = [50, 120, 30, 80, 200, 10, 60, 90, 40, 70] * 5
    config = BudgetConfig(train_tokens=1000, validation_tokens=300, seed=7)
    train, validation = budget_split(lengths, config)
    assert budget_split(lengths, config) == (train, validation)
    assert budget_split(lengths, BudgetConfig(1000, 300, seed=8)) != (train, validation)
    order = np.random.default_rng(7).permutation(len(lengths)).tolist()
    # Train is the longest prefix of the seeded order that fits; validation continues from there.
    assert order[: len(train)] == train
    assert order[len(train) : len(train) + len(validation)] == validation
    assert sum(lengths[i] for i in train) <= 1000 < sum(lengths[i] for i in order[: len(train) + 1])
    validation_tokens = sum(lengths[i] for i in validation)
    assert validation_tokens <= 300 < validation_tokens + lengths[order[len(train) + len(validation)]]


def test_lazy_split_tokenises_only_what_the_budget_needs(tokenizer, demo_workspace):
    # Every recorded role's replies in one frame: several batches of candidates for a budget a few rows fill.
    frame = pl.concat([build_persona_dataset(PersonaRef(ROLES, SOURCE_MODEL, name), demo_workspace.data_root)[0]
                       for name in RECORDED_ROLES])
    kept, _ = select_training_rows(frame, SelectionConfig.defaults_for(ROLES))
    lengths = chat_token_lengths_one_by_one(tokenizer, kept["messages"].to_list())
    # Validation can hold any one row, so the row that ends train starts it.
    config = BudgetConfig(train_tokens=4 * sum(lengths) // len(lengths), validation_tokens=max(lengths), batch_size=16)
    split = build_training_split(frame, tokenizer, SelectionConfig.defaults_for(ROLES), config)
    train, validation = budget_split(lengths, split.config)
    assert train and validation
    assert split.train["length"].to_list() == [lengths[i] for i in train]
    assert split.validation["length"].to_list() == [lengths[i] for i in validation]
    assert split.train["question_index"].to_list() == [kept["question_index"][i] for i in train]
    assert split.rows_counted < kept.height / 2  # most candidates were never needed
    assert split.train["length"].null_count() == 0 and split.validation["length"].null_count() == 0


@pytest.mark.parametrize("train, validation", [(0, 10), (-5, 10), (10, -1)])
def test_budget_config_rejects_impossible_budgets(train, validation):
    with pytest.raises(ValueError, match="token budgets must be positive"):
        BudgetConfig(train_tokens=train, validation_tokens=validation)


def test_training_split_counts_tokens_and_reports_unreachable_budget(tokenizer, demo_workspace):
    frame, _ = build_persona_dataset(PersonaRef(ROLES, SOURCE_MODEL, "pirate"), demo_workspace.data_root)
    # The default budget (100,000 train tokens) is far more than 16 recorded replies hold: every kept row trains.
    split = build_training_split(frame, tokenizer, SelectionConfig.defaults_for(ROLES), BudgetConfig())
    assert not split.train_budget_reached
    assert split.train.height == split.candidates > 0 and split.validation.height == 0
    assert split.train["length"].to_list() == chat_token_lengths_one_by_one(tokenizer, split.train["messages"].to_list())
    # Budgets the same rows can fill: half of their tokens for train, a quarter for validation.
    lengths = split.train["length"].to_list()
    train_budget, validation_budget = sum(lengths) // 2, sum(lengths) // 4
    split = build_training_split(frame, tokenizer, SelectionConfig.defaults_for(ROLES), BudgetConfig(train_budget, validation_budget))
    assert split.train_budget_reached
    # Each split stops at the first row that no longer fits, so it is within one row of its budget.
    assert train_budget - max(lengths) < split.train_tokens <= train_budget
    assert validation_budget - max(lengths) < split.validation_tokens <= validation_budget
    assert split.dropped["over_budget"] == split.candidates - split.train.height - split.validation.height > 0
    assert (split.train["extract_score"] == 3).all()
    assert isinstance(split.train, pl.DataFrame)


def test_held_out_questions_enter_neither_split_and_are_what_the_judged_evaluation_asks(tokenizer, demo_workspace):
    from steering_assets.personas.budget import SelectionError, reserved_questions
    from steering_assets.steering.judged_eval import held_out_instructions

    frame, _ = build_persona_dataset(PersonaRef(ROLES, SOURCE_MODEL, "pirate"), demo_workspace.data_root)
    selection = SelectionConfig.defaults_for(ROLES)
    kept, _ = select_training_rows(frame, selection)
    everything = build_training_split(frame, tokenizer, selection, BudgetConfig())
    # A budget larger than the data takes every kept row's question: none of them is left to evaluate on.
    assert set(everything.train["question"]) | set(everything.validation["question"]) == set(kept["question"])
    split = build_training_split(frame, tokenizer, selection, BudgetConfig(held_out_questions=4))
    reserved = reserved_questions(kept["question"].to_list(), 4, BudgetConfig().seed)
    assert len(reserved) == 4 == len(set(reserved))
    used = set(split.train["question"]) | set(split.validation["question"])
    assert not used & set(reserved)
    assert split.dropped["held_out_question"] == kept.filter(pl.col("question").is_in(reserved)).height > 0
    assert set(reserved) <= set(held_out_instructions(frame, split.train, split.validation))
    # Seeded: the same questions every time.
    assert reserved == reserved_questions(kept["question"].to_list(), 4, BudgetConfig().seed)
    with pytest.raises(SelectionError, match="nothing would be left to train on"):
        build_training_split(frame, tokenizer, selection, BudgetConfig(held_out_questions=kept["question"].n_unique()))
