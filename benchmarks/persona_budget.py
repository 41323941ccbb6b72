"""Training-split throughput: our batched, lazily counted build versus a naive per-row loop.

For every persona of a `make demo` run of SmolLM2-135M-Instruct (the workspace's rollouts, else the
run recorded in tests/fixtures/smollm2_demo), with SmolLM2's own tokenizer and chat template, both
paths turn the score-filtered candidates into the same seeded, token-budgeted train/validation split:

- naive: one ``apply_chat_template(conversation, tokenize=True)`` call per candidate
  row, then the budget fill over the known lengths;
- ours (``build_training_split``): rows are rendered and encoded in batches, in the
  seeded order, and counting stops once both budgets are filled.

The script checks the two splits are identical and prints rows per second and the ratio.

A demo run is small (16 replies of 48 tokens a role), far below the default budgets; a real
assistant-axis role has 1200 replies of up to 512 tokens, some 660k tokens: about 6x the default
train+validation budgets (110k). So each persona's recorded rows are repeated (the same text, in the same seeded shuffle)
until its score-filtered candidates hold ``--pool`` times the budgets; ``--pool 0`` keeps the run as
it is.

    python benchmarks/persona_budget.py [--workspace .demo] [--repeats 3] [--pool 6]
"""

import argparse
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workspace", default=".demo", help="a make demo workspace (else the recorded run)")
    parser.add_argument("--repeats", type=int, default=3, help="best of N timings for each path")
    parser.add_argument("--pool", type=float, default=6.0,
                        help="repeat each persona's rows until its candidate tokens are this many times the budgets (0: as recorded)")
    args = parser.parse_args()

    import polars as pl
    from transformers import AutoTokenizer

    from benchmarks._recorded import describe, recorded_root, smollm2_folder
    from steering_assets.formats.rollouts import PERSONA_KINDS, discover_personas
    from steering_assets.personas.budget import (
        BudgetConfig,
        SelectionConfig,
        budget_split,
        build_training_split,
        select_training_rows,
    )
    from steering_assets.personas.dataset import build_persona_dataset
    from tests.reference import chat_token_lengths_one_by_one

    root = recorded_root(args.workspace)
    data_root = root / "data"
    tokenizer = AutoTokenizer.from_pretrained(smollm2_folder(), local_files_only=True)
    budget = BudgetConfig()
    personas, copies = [], []
    for kind in PERSONA_KINDS.values():
        for ref in discover_personas(data_root, kind).personas:
            frame, selection = build_persona_dataset(ref, data_root)[0], SelectionConfig.defaults_for(kind)
            kept_tokens = sum(chat_token_lengths_one_by_one(tokenizer, select_training_rows(frame, selection)[0]["messages"].to_list()))
            wanted = args.pool * (budget.train_tokens + budget.validation_tokens)
            copies.append(max(1, math.ceil(wanted / kept_tokens)) if kept_tokens else 1)
            personas.append((pl.concat([frame] * copies[-1]), selection))

    def naive():
        splits = []
        for frame, selection in personas:
            kept, _ = select_training_rows(frame, selection)
            lengths = chat_token_lengths_one_by_one(tokenizer, kept["messages"].to_list())
            train, validation = budget_split(lengths, budget)
            splits.append((train, [lengths[i] for i in train], validation, [lengths[i] for i in validation]))
        return splits

    def ours():
        splits, counted = [], 0
        for frame, selection in personas:
            split = build_training_split(frame, tokenizer, selection, budget)
            splits.append(split)
            counted += split.rows_counted
        return splits, counted

    def best_of(fn):
        timings, result = [], None
        for _ in range(args.repeats):
            started = time.perf_counter()
            result = fn()
            timings.append(time.perf_counter() - started)
        return min(timings), result

    naive_s, naive_splits = best_of(naive)
    ours_s, (our_splits, counted) = best_of(ours)
    for (train, train_lengths, validation, validation_lengths), split in zip(naive_splits, our_splits):
        assert split.train["length"].to_list() == train_lengths, "train splits differ"
        assert split.validation["length"].to_list() == validation_lengths, "validation splits differ"
        assert split.train.height == len(train) and split.validation.height == len(validation)

    rows = sum(select_training_rows(frame, selection)[0].height for frame, selection in personas)
    pool_tokens = sum(sum(chat_token_lengths_one_by_one(tokenizer, select_training_rows(f, s)[0]["messages"].to_list())) for f, s in personas)
    budget_tokens = len(personas) * (budget.train_tokens + budget.validation_tokens)
    print(f"{len(personas)} personas of {describe(root)}, {rows} candidate rows after score filtering; "
          "identical splits on both paths")
    print(f"candidate tokens are {pool_tokens / budget_tokens:.1f}x the train+validation budgets "
          f"(each persona's recorded rows repeated {min(copies)}-{max(copies)} times)")
    print(f"naive (one apply_chat_template per row): {rows / naive_s:8.0f} rows/s  ({naive_s:.2f}s)")
    print(f"batched, counted lazily:                 {rows / ours_s:8.0f} rows/s  ({ours_s:.2f}s, {counted} rows tokenised)")
    print(f"speed-up: {naive_s / ours_s:.1f}x (target >= 5x)")


if __name__ == "__main__":
    main()
