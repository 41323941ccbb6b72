"""The demo's vetting inputs: paired scenarios with verdicts known by construction, in the files users write, and
how far SmolLM2's likelihood judge (what `make demo` vets them with) agrees with those verdicts."""

import json

import pytest

from demo.instructions import DEMO_TRAITS
from demo.vetting import DEFINITIONS, WEAK_LINES, demo_trait_scenarios, expected_verdicts, write_demo_scenarios
from steering_assets.formats.scenarios import ScenarioFormatError, discover_traits, read_trait_scenarios, read_verdicts

KEYS = [f"personality/{trait}" for trait in DEMO_TRAITS]


def cues(trait):
    """(positive cue, negative cue) of the trait's instruction file: the cues its rollouts were generated under."""
    return DEMO_TRAITS[trait]["pairs"][0]


def test_each_trait_is_a_folder_the_readers_vet_with_one_pair_per_question(tmp_path):
    folders = write_demo_scenarios(tmp_path)
    assert discover_traits(tmp_path) == sorted(folders) == [tmp_path / key for key in sorted(KEYS)]
    for trait in DEMO_TRAITS:
        scenarios = read_trait_scenarios(tmp_path / "personality" / trait)
        assert scenarios.definition == DEFINITIONS[trait] and trait in scenarios.definition.lower()
        assert scenarios.sources == {"positive": "positive.txt", "negative": "negative.txt"} and not scenarios.ignored
        questions = DEMO_TRAITS[trait]["questions"]
        assert len(scenarios.positive) == len(scenarios.negative) == len(questions)
        pos_cue, neg_cue = cues(trait)
        for index, (question, pos, neg) in enumerate(zip(questions, scenarios.positive, scenarios.negative)):
            # Pair i asks question i on both sides; a clean pair differs only in its cue.
            assert pos.prompt.endswith(question) and neg.prompt.endswith(question), index
            assert pos.system_prompt is None and neg.system_prompt is None
            if index not in WEAK_LINES:
                assert (pos.prompt, neg.prompt) == (f"{pos_cue} {question}", f"{neg_cue} {question}")


def test_the_weak_lines_sit_at_WEAK_LINES_and_their_verdicts_say_why(tmp_path):
    write_demo_scenarios(tmp_path)
    assert len(WEAK_LINES) == 3 and len(set(WEAK_LINES.values())) == 3
    for trait in DEMO_TRAITS:
        other = next(t for t in DEMO_TRAITS if t != trait)
        folder = tmp_path / "personality" / trait
        scenarios = read_trait_scenarios(folder)
        verdicts = {(v.polarity, v.idx): v for v in read_verdicts(folder, scenarios)}
        failing = {key: v.why for key, v in verdicts.items() if not v.should_pass}
        question = dict(enumerate(DEMO_TRAITS[trait]["questions"]))
        pos_cue, neg_cue = cues(trait)
        at = {weak: index for index, weak in WEAK_LINES.items()}
        # Exactly the weak lines fail, each saying why.
        assert failing == {("positive", at["positive: no cue"]): "weak: no cue for the trait",
                           ("positive", at["positive: cues the opposite"]): "weak: cues the opposite",
                           ("negative", at["negative: cues the other trait"]): f"weak: cues {other}, not the opposite"}
        for index, weak in WEAK_LINES.items():
            side = weak.split(":")[0]
            text = scenarios.side(side)[index].prompt
            expected = {"positive: no cue": question[index], "positive: cues the opposite": f"{neg_cue} {question[index]}",
                        "negative: cues the other trait": f"{cues(other)[0]} {question[index]}"}[weak]
            assert text == expected, (trait, weak)
            # Only the weak line of the pair changed: its partner is the clean line.
            partner = "negative" if side == "positive" else "positive"
            assert verdicts[(partner, index)].should_pass
            assert scenarios.side(partner)[index].prompt == f"{pos_cue if partner == 'positive' else neg_cue} {question[index]}"
        assert {v.why for v in verdicts.values() if v.should_pass} == {"sets up the trait", "sets up the opposite"}


def test_every_line_has_one_verdict_written_for_its_current_text(tmp_path):
    write_demo_scenarios(tmp_path)
    for trait in DEMO_TRAITS:
        key = f"personality/{trait}"
        folder = tmp_path / key
        scenarios = read_trait_scenarios(folder)
        rows = [json.loads(line) for line in (folder / "verdicts.jsonl").read_text().splitlines()]
        # read_verdicts refuses a verdict whose "prompt" differs from its line, and a second verdict for a line.
        verdicts = read_verdicts(folder, scenarios)
        assert sorted((v.polarity, v.idx) for v in verdicts) == sorted(
            (side, i) for side in ("positive", "negative") for i in range(len(scenarios.side(side))))
        assert all(row["prompt"] == scenarios.side(row["polarity"])[row["idx"]].prompt for row in rows)
        # The verdicts are the construction's: the same as demo_trait_scenarios, and as expected_verdicts reads them back.
        positive, negative = demo_trait_scenarios(trait)
        built = {side: [(item.text, item.should_pass, item.why) for item in items]
                 for side, items in (("positive", positive), ("negative", negative))}
        read_back = expected_verdicts(tmp_path, key)
        assert {side: [(r["prompt"], r["should_pass"], r["why"]) for r in read_back[side]] for side in read_back} == built
        assert [(r["prompt"], r["should_pass"], r["why"]) for r in rows] == built["positive"] + built["negative"]


def test_a_rewrite_leaves_unchanged_files_alone_and_restores_edited_ones(tmp_path):
    write_demo_scenarios(tmp_path)
    files = sorted(p for p in tmp_path.rglob("*") if p.is_file())
    assert len(files) == 4 * len(DEMO_TRAITS)
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in files}
    write_demo_scenarios(tmp_path)
    # Untouched, not even rewritten with the same bytes: the scenario sensor and the file digests see nothing new.
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in files} == before
    # An edited line no longer matches its verdict (read_verdicts refuses it); the next write puts the demo's back.
    folder = tmp_path / "personality" / "humorous"
    edited = folder / "positive.txt"
    edited.write_text("a line of my own\n" + edited.read_text().split("\n", 1)[1])
    with pytest.raises(ScenarioFormatError, match="verdict was written for"):
        read_verdicts(folder, read_trait_scenarios(folder))
    write_demo_scenarios(tmp_path)
    assert edited.read_bytes() == before[edited][0] and read_verdicts(folder, read_trait_scenarios(folder))
    assert {p: p.stat().st_mtime_ns for p in files if p != edited} == {p: m for p, (_, m) in before.items() if p != edited}
    assert sorted(p for p in tmp_path.rglob("*") if p.is_file()) == files  # no temporary file left behind


@pytest.fixture(scope="module")
def vetted(smollm2_loaded, tmp_path_factory):
    """The demo's scenario stage as `make demo` runs it (SmolLM2's likelihood judge, the default thresholds), one trait
    at a time on first use: key -> (scenario_scores.json, the known verdicts, the agreement the demo prints)."""
    from steering_assets.core.artifacts import ArtifactStore
    from steering_assets.judge.likelihood import LikelihoodJudge
    from steering_assets.vetting.calibration import calibrate
    from steering_assets.vetting.materialize import read_report, vet_scenarios
    from steering_assets.vetting.reports import Thresholds

    model, tokenizer = smollm2_loaded
    root = tmp_path_factory.mktemp("demo-vetting")
    write_demo_scenarios(root / "scenarios")
    store = ArtifactStore(root / "artifacts")
    judge = LikelihoodJudge(model, tokenizer, "smollm2")
    results = {}

    def vet(key):
        if key not in results:
            folder = root / "scenarios" / key
            verdicts = read_verdicts(folder, read_trait_scenarios(folder))
            vet_scenarios(folder, store, judge, "smollm2", Thresholds(), verdicts)
            report = read_report(store, "scenario_vetting", *key.split("/"))
            results[key] = report, verdicts, calibrate("smollm2", "scenario", report, verdicts, Thresholds(), None)["agreement"]
        return results[key]

    return vet


OPTIMISTIC_MISSES = (
    "measured 13/20, under the 17/20 of passing everything: the gloomy cue reads as optimistic after some questions "
    "(4 clean negatives score 45-80), and the no-cue and opposite-cued positives score 87 and 63")


@pytest.mark.parametrize("key", [
    "personality/humorous",
    pytest.param("personality/optimistic", marks=pytest.mark.xfail(strict=True, raises=AssertionError, reason=OPTIMISTIC_MISSES)),
])
def test_the_likelihood_judge_agrees_with_the_known_verdicts_better_than_passing_everything(vetted, key):
    report, verdicts, agreement = vetted(key)
    assert agreement["compared"] == len(verdicts) == 20
    # The reference: a judge that passes every line agrees on exactly the lines that should pass.
    pass_everything = sum(v.should_pass for v in verdicts) / len(verdicts)
    assert agreement["rate"] > pass_everything, agreement["misses"]
    # The two weak positive lines (no cue, the opposite's cue) do not set up the trait: both fail.
    weak_positives = {i for i, weak in WEAK_LINES.items() if weak.startswith("positive")}
    assert weak_positives <= set(report["failed_indices"]["positive"]), report["results"]
