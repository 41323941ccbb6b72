"""The judge-scored steering evaluation: split, harmonic mean, factor choice, batched generation, norms."""

import math
import statistics

import numpy as np
import polars as pl
import pytest
import torch

from steering_assets.judge.judgments import Judgment, failed, prompt_text
from steering_assets.steering.judged_eval import (
    ACTIVATION,
    PROMPTED,
    RANDOM,
    TRAINED,
    UNSTEERED,
    JudgedEvalConfig,
    NotEnoughInstructionsError,
    Setting,
    chat_prompt,
    choose_factor,
    evaluate_judged,
    generate_batched,
    held_out_instructions,
    persona_system_prompt,
    scaled_direction,
    split_instructions,
    typical_residual_norm,
    winner,
)
from steering_assets.steering.ratings import (
    CONCEPT_INSTRUCTION,
    FLUENCY_INSTRUCTION,
    INSTRUCTION_INSTRUCTION,
    harmonic_mean,
    ratings_from_judgments,
)
from tests.reference import generate_per_setting


def test_harmonic_mean_matches_the_formula_and_zero_sinks_it():
    for values in ([2, 2, 2], [1, 2, 2], [0.5, 1.5, 2.0], [0.1, 2, 2]):
        assert harmonic_mean(values) == pytest.approx(statistics.harmonic_mean(values))
    assert harmonic_mean([0, 2, 2]) == 0.0
    assert harmonic_mean([1, 2, 2]) == pytest.approx(1.5)
    with pytest.raises(ValueError):
        harmonic_mean([-1, 2, 2])


def test_a_missing_rating_is_an_item_error_not_a_zero():
    ok = Judgment(score=100.0, weight=1.0)
    ratings = ratings_from_judgments({"concept": ok, "instruction": Judgment(score=50.0, weight=1.0), "fluency": ok})
    assert (ratings.concept, ratings.instruction, ratings.fluency) == (2.0, 1.0, 2.0)
    assert ratings.harmonic == pytest.approx(statistics.harmonic_mean([2, 1, 2]))
    refused = ratings_from_judgments({"concept": ok, "instruction": Judgment(None, 0.0, refusal=True), "fluency": ok})
    assert not refused.ok and "instruction: refused" in refused.error
    unscored = ratings_from_judgments({"concept": ok, "instruction": ok, "fluency": Judgment(None, 0.1, top_token="Sure")})
    assert "fluency" in unscored.error and "'Sure'" in unscored.error
    errored = ratings_from_judgments({"concept": failed("HTTP 500"), "instruction": ok, "fluency": ok})
    assert "concept: HTTP 500" in errored.error
    with pytest.raises(ValueError):
        errored.harmonic


def test_the_split_is_seeded_disjoint_and_refuses_too_few():
    instructions = [f"Question {i}?" for i in range(30)]
    config = JudgedEvalConfig(instructions=10, seed=3)
    selection, report = split_instructions(instructions, config, "roles/m/pirate")
    assert len(selection) == len(report) == 5 and not set(selection) & set(report)
    assert set(selection) | set(report) <= set(instructions)
    assert (selection, report) == split_instructions(instructions, config, "roles/m/pirate")
    assert (selection, report) != split_instructions(instructions, JudgedEvalConfig(instructions=10, seed=4), "x")
    # Fewer than asked: all of them (an even number), still two halves.
    selection, report = split_instructions(instructions[:7], config, "x")
    assert len(selection) == len(report) == 3
    with pytest.raises(NotEnoughInstructionsError, match=r"roles/m/pirate: 3 held-out instruction\(s\).*at least 4"):
        split_instructions(instructions[:3], config, "roles/m/pirate")


def test_held_out_instructions_exclude_training_and_validation_questions():
    dataset = pl.DataFrame({"question": ["a?", "b?", "c?", "a?", "d?", "e?"]})
    train = pl.DataFrame({"question": ["a?"]})
    validation = pl.DataFrame({"question": ["d?"]})
    assert held_out_instructions(dataset, train, validation) == ["b?", "c?", "e?"]


def test_the_persona_prompt_is_the_most_frequent_instruction_or_na():
    dataset = pl.DataFrame({"label": ["pos", "pos", "pos", "default"], "system_prompt": ["Be a pirate.", "Arr.", "Be a pirate.", ""]})
    prompt, why = persona_system_prompt(dataset, ["pos"])
    assert prompt == "Be a pirate." and "2 of 3" in why
    none, why = persona_system_prompt(dataset.with_columns(pl.lit("").alias("system_prompt")), ["pos"])
    assert none is None and "no row labelled ['pos'] carries a system prompt" in why


def test_the_factor_is_the_best_on_the_selection_half():
    summaries = {0.5: {"harmonic_mean": 0.4, "rated": 4}, 1.0: {"harmonic_mean": 0.9, "rated": 4},
                 2.0: {"harmonic_mean": 0.9, "rated": 4}, 4.0: {"harmonic_mean": math.nan, "rated": 0}}
    assert choose_factor(summaries) == 1.0  # a tie goes to the gentler factor
    assert choose_factor({1.0: {"harmonic_mean": math.nan, "rated": 0}}) is None


def test_scaled_direction_is_factor_times_the_residual_norm():
    vector = np.array([3.0, 4.0], dtype=np.float32)
    assert np.allclose(scaled_direction(vector, 0.5, 10.0), [3.0, 4.0])
    assert np.linalg.norm(scaled_direction(vector, 2.0, 7.0)) == pytest.approx(14.0)
    assert not scaled_direction(np.zeros(2, dtype=np.float32), 2.0, 7.0).any()


def test_the_typical_residual_norm_is_the_median_over_reply_tokens(tiny_model_factory, tokenizer, demo_conversations):
    from steering_assets.models.assistant_mask import assistant_masks
    from steering_assets.models.hooks import decoder_layers

    model = tiny_model_factory()
    conversations = demo_conversations("chef", 3)
    layer = 1
    # Reference: each conversation alone (no padding), the block's output read by a hook of our own.
    norms = []
    for masked in assistant_masks(tokenizer, conversations):
        captured = {}
        handle = decoder_layers(model)[layer].register_forward_hook(
            lambda m, a, out: captured.setdefault("h", out[0] if isinstance(out, tuple) else out))
        with torch.no_grad():
            model(input_ids=torch.tensor([masked.input_ids[:512]]))
        handle.remove()
        mask = torch.tensor(masked.assistant_mask[:512], dtype=torch.bool)
        norms.append(captured["h"][0].norm(dim=-1)[mask])
    expected = float(torch.cat(norms).median())
    assert typical_residual_norm(model, tokenizer, conversations, layer, batch_size=2) == pytest.approx(expected, rel=1e-4)


def test_one_batched_sweep_writes_what_one_call_per_setting_writes(tiny_model_factory, tokenizer):
    """Greedy decoding: mixing every method and factor in the same batches changes no text."""
    model = tiny_model_factory()
    hidden = model.config.hidden_size
    generator = torch.Generator().manual_seed(0)
    trained, activation = torch.randn(hidden, generator=generator), torch.randn(hidden, generator=generator)
    questions = ["What do you think about a lost key?", "How would you describe a quiet morning?", "Tell me a short story about an old map."]
    settings = {Setting(TRAINED, 1.0): 3.0 * trained, Setting(ACTIVATION, 2.0): 6.0 * activation,
                Setting(UNSTEERED): torch.zeros(hidden), Setting(PROMPTED): torch.zeros(hidden)}
    prompts = {s: [chat_prompt(tokenizer, q, "You are a pirate." if s.method == PROMPTED else None) for q in questions]
               for s in settings}
    reference = generate_per_setting(model, tokenizer, prompts, 1, settings, max_new_tokens=12)
    rows = list(settings)
    flat = [p for s in rows for p in prompts[s]]
    index = [i for i, s in enumerate(rows) for _ in questions]
    batched = generate_batched(model, tokenizer, flat, index, 1, torch.stack([settings[s] for s in rows]), 12, batch_size=5)
    assert batched == [text for s in rows for text in reference[s]]
    assert reference[Setting(TRAINED, 1.0)] != reference[Setting(UNSTEERED)]  # the steering reached the text


class ScriptedJudge:
    """Rates from the reply text: concept 2 when the reply is long, instruction from a per-instruction table,
    fluency 2; the reply "garbled" gets no fluency rating. Counts its calls like the real judges."""

    def __init__(self, instruction_rating):
        self.instruction_rating = instruction_rating
        self.calls = 0
        self.scale_tops = set()

    def score(self, prompts, scale_top=None):
        self.scale_tops.add(scale_top)
        self.calls += len(prompts)
        out = []
        for prompt in map(prompt_text, prompts):
            if prompt.startswith(CONCEPT_INSTRUCTION):
                out.append(Judgment(score=100.0, weight=1.0))
            elif prompt.startswith(INSTRUCTION_INSTRUCTION):
                instruction = prompt.split("Instruction: ", 1)[1].split("\n\nReply:", 1)[0]
                out.append(Judgment(score=50.0 * self.instruction_rating(instruction), weight=1.0))
            else:
                assert prompt.startswith(FLUENCY_INSTRUCTION)
                out.append(Judgment(score=None, weight=0.0, refusal=True) if prompt.endswith("Reply: garbled")
                           else Judgment(score=100.0, weight=1.0))
        return out


def test_factor_chosen_on_one_half_and_scores_reported_on_the_other(tiny_model_factory, tokenizer, monkeypatch):
    model = tiny_model_factory()
    hidden = model.config.hidden_size
    rng = np.random.default_rng(0)
    vectors = {TRAINED: rng.normal(size=hidden).astype(np.float32), ACTIVATION: rng.normal(size=hidden).astype(np.float32)}
    selection = ["Selection one?", "Selection two?"]
    report = ["Report one?", "Report two?"]
    config = JudgedEvalConfig(factors=(0.5, 1.0, 2.0), max_new_tokens=6, batch_size=7)
    # Steering strength visible to the judge through the instruction rating: patch the generations so the
    # selection half prefers factor 2 for "trained" and 0.5 for "activation".
    import steering_assets.steering.judged_eval as judged

    def fake_generate(model, tokenizer, prompts, rows, layer, vectors_, *args, **kwargs):
        return [f"reply {row}" for row in rows]

    monkeypatch.setattr(judged, "generate_batched", fake_generate)
    settings = judged.sweep_settings(config, prompted=True)
    best_row = {TRAINED: settings.index(Setting(TRAINED, 2.0)), ACTIVATION: settings.index(Setting(ACTIVATION, 0.5))}

    class RowJudge(ScriptedJudge):
        def score(self, prompts, scale_top=None):  # the selection half: only each method's best row answers
            out = super().score(prompts, scale_top)
            for i, prompt in enumerate(map(prompt_text, prompts)):
                if prompt.startswith(INSTRUCTION_INSTRUCTION) and "Selection" in prompt:
                    row = int(prompt.rsplit("reply ", 1)[1])
                    out[i] = Judgment(score=100.0 if row in best_row.values() else 25.0, weight=1.0)
            return out

    judge = RowJudge(lambda instruction: 2.0)  # the report half: every reply answers its instruction
    result = evaluate_judged(model=model, tokenizer=tokenizer, judge=judge, layer=1, vectors=vectors, residual_norm=3.0,
                             persona="pirate: You are a pirate.", system_prompt="You are a pirate.", prompted_why="",
                             selection=selection, report=report, config=config, log=lambda m: None)
    table = {row["method"]: row for row in result.table}
    assert table[TRAINED]["factor"] == 2.0 and table[ACTIVATION]["factor"] == 0.5
    # Reported on the report half only: every report reply has ratings 2/2/2, so the harmonic mean is 2 (the
    # selection half's 25-point instruction ratings would have pulled it down).
    for method in (TRAINED, ACTIVATION, PROMPTED, UNSTEERED):
        assert table[method]["harmonic_mean"] == pytest.approx(2.0) and table[method]["rated"] == 2
    # The curve the factor was chosen on is the selection half's.
    assert result.curves[TRAINED]["2"]["instruction"] == pytest.approx(2.0)
    assert result.curves[TRAINED]["1"]["instruction"] == pytest.approx(0.5)
    # 11 settings: three vector methods (trained, activation, random) at three factors, unsteered, prompted.
    assert judge.scale_tops == {2} and result.judge_calls == 3 * result.generations == 3 * 11 * 4
    assert table[TRAINED]["above_random"]["harmonic_mean"] == pytest.approx(2.0 - table[RANDOM]["harmonic_mean"])
    assert winner(result.table) in (TRAINED, ACTIVATION, PROMPTED, UNSTEERED)


def test_item_errors_are_counted_and_the_prompted_row_says_why_when_na(tiny_model_factory, tokenizer, monkeypatch):
    import steering_assets.steering.judged_eval as judged

    model = tiny_model_factory()
    hidden = model.config.hidden_size
    vectors = {TRAINED: np.ones(hidden, dtype=np.float32), ACTIVATION: -np.ones(hidden, dtype=np.float32)}
    monkeypatch.setattr(judged, "generate_batched", lambda model, tok, prompts, rows, *a, **k: [
        "garbled" if "Report two" in p else "fine" for p in prompts])
    result = evaluate_judged(model=model, tokenizer=tokenizer, judge=ScriptedJudge(lambda q: 2.0), layer=1, vectors=vectors,
                             residual_norm=1.0, persona="pirate", system_prompt=None,
                             prompted_why="no row labelled ['pos'] carries a system prompt",
                             selection=["Selection one?", "Selection two?"], report=["Report one?", "Report two?"],
                             config=JudgedEvalConfig(factors=(1.0,), max_new_tokens=4), log=lambda m: None)
    table = {row["method"]: row for row in result.table}
    assert table[PROMPTED] == {"method": PROMPTED, "factor": None, "n/a": "no row labelled ['pos'] carries a system prompt"}
    assert table[UNSTEERED]["rated"] == 1 and table[UNSTEERED]["item_errors"] == 1
    assert table[UNSTEERED]["harmonic_mean"] == pytest.approx(2.0)  # the unrated reply is left out, not scored 0
    assert {e["setting"] for e in result.item_errors} == {"trained@1", "activation@1", "random@1", "unsteered"}
    assert all("fluency: refused" in e["error"] for e in result.item_errors)


def test_degenerate_replies_get_fluency_zero_whatever_the_judge_says(tiny_model_factory, tokenizer, monkeypatch):
    import steering_assets.steering.judged_eval as judged

    leak = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
    assert judged.degenerate("Arr, the sea be calm today, matey.") is None
    assert judged.degenerate("aye " * 20).startswith("repetition")
    assert judged.degenerate("Sure. " + leak + ".", [leak]).startswith("prints the template's system prompt")
    assert judged.degenerate("  ") == "empty reply"
    model = tiny_model_factory()
    hidden = model.config.hidden_size
    vectors = {TRAINED: np.ones(hidden, dtype=np.float32), ACTIVATION: -np.ones(hidden, dtype=np.float32)}
    monkeypatch.setattr(judged, "generate_batched", lambda model, tok, prompts, rows, *a, **k: [
        "aye " * 20 if row == 0 else "A fine and varied answer to the question." for row in rows])
    result = evaluate_judged(model=model, tokenizer=tokenizer, judge=ScriptedJudge(lambda q: 2.0), layer=1, vectors=vectors,
                             residual_norm=1.0, persona="pirate", system_prompt=None, prompted_why="n/a",
                             selection=["Selection one?", "Selection two?"], report=["Report one?", "Report two?"],
                             config=JudgedEvalConfig(factors=(1.0,), max_new_tokens=4), log=lambda m: None, leaks=[leak])
    table = {row["method"]: row for row in result.table}
    # Row 0 of the sweep is trained@1: the judge rated its loops fluent (2), the evaluation counts them 0.
    assert table[TRAINED]["fluency"] == 0.0 and table[TRAINED]["harmonic_mean"] == 0.0 and table[TRAINED]["degenerate"] == 2
    assert table[ACTIVATION]["fluency"] == pytest.approx(2.0) and table[ACTIVATION]["degenerate"] == 0
    assert all(r["degenerate"].startswith("repetition") for r in result.records if r["method"] == TRAINED)
