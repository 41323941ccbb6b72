"""The demo's inputs: instruction files and scenarios the platform's own readers accept, written idempotently,
and the concept sentences derived from scored trait replies."""

import json

import pytest

from demo.build import DEMO_MODEL, write_demo_inputs
from demo.features import first_sentence, strength_label, write_demo_concepts
from demo.instructions import DEMO_ROLES, DEMO_TRAITS, QUESTIONS
from demo.vetting import WEAK_LINES
from steering_assets.formats.concepts import read_concept_sentences
from steering_assets.formats.instructions import (
    discover_instructions,
    instruction_path,
    read_instruction_file,
    read_questions,
)
from steering_assets.formats.rollouts import ROLES, TRAITS
from steering_assets.formats.scenarios import read_trait_scenarios, read_verdicts
from tests.conftest import response_row, write_persona


def test_instruction_files_are_read_by_the_platform(tmp_path):
    workspace = write_demo_inputs(tmp_path)
    root = workspace.instructions_root
    assert discover_instructions(root, ROLES) == sorted([*DEMO_ROLES, "default"])
    assert discover_instructions(root, TRAITS) == sorted(DEMO_TRAITS)
    for name, prompts in DEMO_ROLES.items():
        spec = read_instruction_file(instruction_path(root, ROLES, name), ROLES)
        assert [p["pos"] for p in spec.prompts] == list(prompts) and spec.eval_prompt
    trait = read_instruction_file(instruction_path(root, TRAITS, "optimistic"), TRAITS)
    assert trait.prompts[0]["neg"] and len(trait.questions) == 10
    assert read_questions(root / "extraction_questions.jsonl") == QUESTIONS


def test_a_second_write_changes_no_file(tmp_path):
    write_demo_inputs(tmp_path)
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in (tmp_path / "scenarios").rglob("*") if p.is_file()}
    write_demo_inputs(tmp_path)
    after = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in (tmp_path / "scenarios").rglob("*") if p.is_file()}
    assert before == after and len(before) == 4 * len(DEMO_TRAITS)


def test_scenarios_and_their_known_verdicts_are_read_by_the_vetting_readers(tmp_path):
    workspace = write_demo_inputs(tmp_path)
    for trait in DEMO_TRAITS:
        folder = workspace.scenarios_root / "personality" / trait
        scenarios = read_trait_scenarios(folder)
        verdicts = read_verdicts(folder, scenarios)
        assert len(scenarios.side("positive")) == len(scenarios.side("negative")) == len(DEMO_TRAITS[trait]["questions"])
        weak = sorted((v.polarity, v.idx) for v in verdicts if not v.should_pass)
        assert len(weak) == len(WEAK_LINES)
        # A weak positive line without a cue is the bare question.
        no_cue = next(i for i, what in WEAK_LINES.items() if what == "positive: no cue")
        assert scenarios.side("positive")[no_cue].prompt == DEMO_TRAITS[trait]["questions"][no_cue]


def test_settings_point_every_resource_at_the_workspace(tmp_path):
    workspace = write_demo_inputs(tmp_path)
    assert workspace.settings().model == workspace.settings().judge_local_model == DEMO_MODEL
    settings = workspace.environment()
    assert settings["PERSONA_MODEL"] == settings["PERSONA_JUDGE_LOCAL_MODEL"] == DEMO_MODEL
    assert settings["PERSONA_JUDGE_BACKEND"] == "likelihood"
    assert all(value.startswith(str(tmp_path)) for key, value in settings.items()
               if key.endswith(("_ROOT", "_CONFIG")))


@pytest.mark.parametrize("score,label", [(0, 0), (24.9, 0), (25, 1), (49, 1), (50, 2), (74, 2), (75, 3), (100, 3)])
def test_strength_labels_split_the_score_range_in_quarters(score, label):
    assert strength_label(score) == label


def test_first_sentence_cuts_at_the_first_sentence_end_and_at_a_word():
    assert first_sentence("Arr, the sea! It is calm today.") == "Arr, the sea!"
    long = "word " * 80
    assert len(first_sentence(long)) <= 200 and not first_sentence(long).endswith(" ")


def test_concepts_come_from_scored_trait_replies_and_leave_out_unusable_ones(tmp_path):
    rows = [response_row("pos", 0, 0, "The future looks bright and wonderful. Truly."),
            response_row("neg", 0, 0, "Everything will go wrong, as it always does."),
            response_row("pos", 0, 1, "Hi."),  # too short
            response_row("neg", 0, 1, "It will surely rain on your holiday, I fear.")]  # unscored
    write_persona(tmp_path / "data", "traits_240", "optimistic", rows,
                  scores={"pos_p0_q0": 92, "neg_p0_q0": 8, "pos_p0_q1": 60}, model="m")
    lines = []
    counts = write_demo_concepts(tmp_path / "data", "m", tmp_path / "concepts", ["optimistic"], log=lines.append)
    assert counts == {"optimistic": {0: 1, 1: 0, 2: 0, 3: 1}}
    sentences = read_concept_sentences(tmp_path / "concepts" / "optimistic.jsonl")
    assert [(s.sentence, s.label) for s in sentences] == [("The future looks bright and wonderful.", 3),
                                                         ("Everything will go wrong, as it always does.", 0)]
    assert lines and "2 replies left out" in lines[0]
    assert json.loads((tmp_path / "concepts" / "optimistic.jsonl").read_text().splitlines()[0])["concept_strength_label"] == 3


def test_a_vector_effect_needs_the_concept_margin_over_random_at_a_fluent_factor(tmp_path):
    from demo.report import vector_effects
    from steering_assets.core.artifacts import ArtifactStore
    from steering_assets.formats.rollouts import ROLES, PersonaRef
    from steering_assets.steering.judged_eval import judged_eval_folder

    store = ArtifactStore(tmp_path)

    def judged(name, trained, activation):
        ref = PersonaRef(ROLES, "m", name)
        table = [{"method": "trained", "factor": 0.25, **trained}, {"method": "activation", "factor": 0.125, **activation},
                 {"method": "random", "factor": 0.25, "concept": 0.1, "fluency": 1.9}]
        store.write_artifact(judged_eval_folder(store, ref), {"x.txt": lambda p: p.write_text("x")}, fingerprint_value=name,
                             details={"table": table})
        return ref

    refs = [
        # The trained vector gains more concept but breaks the text: the fluent activation vector is the one shown.
        judged("chef", {"above_random": {"concept": 1.8}, "fluency": 0.2}, {"above_random": {"concept": 0.7}, "fluency": 1.5}),
        judged("pirate", {"above_random": {"concept": 0.3}, "fluency": 1.9}, {"above_random": {"concept": 0.1}, "fluency": 1.9}),
        PersonaRef(ROLES, "m", "never_judged"),
    ]
    effects = {e.persona: e for e in vector_effects(store, refs)}
    assert set(effects) == {"m/chef", "m/pirate"}
    assert (effects["m/chef"].method, effects["m/chef"].factor, effects["m/chef"].holds) == ("activation", 0.125, True)
    assert (effects["m/pirate"].method, effects["m/pirate"].holds) == ("trained", False)  # +0.3 is under the margin
