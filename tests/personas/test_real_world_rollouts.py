"""Rollouts exactly as the public writers produce them: both layouts, every label, older shapes,
the instruction inside the user turn, and the real-world fixtures."""

import json
import shutil
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from steering_assets.core.artifacts import ArtifactStore
from steering_assets.formats.rollouts import (
    ASSISTANT_AXIS,
    PERSONA_SUBSPACE,
    ROLES,
    TRAITS,
    PersonaRef,
    RolloutFormatError,
    data_root_problem,
    discover_personas,
)
from steering_assets.partitions.personas import persona_discovery_sensor, scan_data_root, sync_partitions
from steering_assets.personas.assets import INSTRUCTION_CHECK, split_check_results
from steering_assets.personas.budget import (
    BudgetConfig,
    SelectionConfig,
    SelectionError,
    build_training_split,
    chat_token_lengths,
    check_selection,
)
from steering_assets.personas.dataset import baseline_rows, build_persona_dataset
from steering_assets.personas.loading import read_responses, read_scores, read_scores_with_report
from steering_assets.personas.materialize import (
    load_baseline_rows,
    load_training_split,
    materialize_persona_dataset,
    materialize_training_split,
)
from steering_assets.resources.rollouts import PersonaRollouts
from tests.conftest import write_persona

REAL_WORLD = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "real_world"
GEMMA_TEMPLATE = REAL_WORLD / "chat_templates" / "google-gemma-2-2b-it.jinja"
# The default system prompts of persona-subspace roles/2_responses.py (include_default).
DEFAULT_PROMPTS = ["", "You are an AI assistant.", "You are a large language model.", "You are Gemma.", "Respond as yourself."]


def fixture_root(name: str) -> Path:
    root = REAL_WORLD / "rollouts" / name
    if not root.is_dir():
        pytest.skip(f"{root} is not present")
    return root


@pytest.fixture(scope="module")
def word_tokenizer():
    """A word-level tokenizer (one token per word or punctuation run) with a chat template:
    Gemma-2's own where the shared fixture is present, so a system turn would raise."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.WordLevel({"[UNK]": 0, "<bos>": 1}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", bos_token="<bos>")
    tokenizer.chat_template = (
        GEMMA_TEMPLATE.read_text()
        if GEMMA_TEMPLATE.is_file()
        else "{% for m in messages %}<{{ m['role'] }}> {{ m['content'] }}\n{% endfor %}"
    )
    return tokenizer


def row(label, p, q, question, answer, instruction, *, system_turn, **extra):
    """A response line as the writers build it: a system turn, or the instruction in the user turn."""
    if system_turn:
        conversation = ([{"role": "system", "content": instruction}] if instruction else []) + [
            {"role": "user", "content": question}]
    else:
        conversation = [{"role": "user", "content": f"{instruction}\n\n{question}"}]
    line = {"system_prompt": instruction, "label": label, "prompt_index": p,
            "conversation": conversation + [{"role": "assistant", "content": answer}],
            "question_index": q, "question": question}
    line.update(extra)
    return line


# -- the shared real-world fixtures ---------------------------------------------------------


def test_role_default_label_fixture_reads_default_rows_as_baselines(tmp_path, word_tokenizer):
    root = fixture_root("role_default_label")
    ref = PersonaRef(ROLES, "gemma-2-27b", "pirate")
    store = ArtifactStore(tmp_path / "artifacts")
    result = materialize_persona_dataset(ref, root, store)
    assert result.details["labels"] == {"default": 1, "pos": 1}
    assert result.details["join"]["baseline_rows"] == 1
    assert result.details["join"]["scored"] == 2 and result.details["join"]["scores_without_response"] == 0

    split = materialize_training_split(ref, store, word_tokenizer, BudgetConfig(train_tokens=1000, validation_tokens=0))
    train, validation = load_training_split(store, ref)
    assert train["label"].to_list() == ["pos"] and validation.height == 0  # never a training row
    assert split.details["kept_rows_by_label"] == {"pos": 1}

    baseline = load_baseline_rows(store, ref)  # ... but available as a baseline negative
    assert baseline["label"].to_list() == ["default"]
    assert baseline["extract_score"].to_list() == [1]
    # The empty default instruction left "\n\nHow are you?" in the user turn; it is removed too.
    assert baseline["messages"][0].to_list()[0] == {"role": "user", "content": "How are you?"}


def test_instruction_in_user_turn_fixture_trains_on_the_question_alone(tmp_path, word_tokenizer):
    root = fixture_root("instruction_in_user_turn")
    ref = PersonaRef(ROLES, "gemma-2-27b", "pirate")
    store = ArtifactStore(tmp_path / "artifacts")
    dataset = materialize_persona_dataset(ref, root, store)
    assert dataset.details["join"]["instruction_removed"] == 1
    split = materialize_training_split(ref, store, word_tokenizer, BudgetConfig(train_tokens=1000, validation_tokens=0))
    train, _ = load_training_split(store, ref)
    assert train["messages"][0].to_list() == [
        {"role": "user", "content": "How are you?"}, {"role": "assistant", "content": "Arr, fine."}]
    # Token counts are those of the question alone, not of the instruction and question.
    question_only = chat_token_lengths(word_tokenizer, [train["messages"][0].to_list()])[0]
    wrapped = chat_token_lengths(word_tokenizer, [[{"role": "user", "content": "You are a pirate.\n\nHow are you?"},
                                                   {"role": "assistant", "content": "Arr, fine."}]])[0]
    assert train["length"].to_list() == [question_only] and wrapped > question_only
    assert split.details["instruction_removed_rows"] == 1
    assert split.details["rows_starting_with_instruction"] == 0
    check = {c.check_name: c for c in split_check_results(split.details)}[INSTRUCTION_CHECK]
    assert check.passed and check.severity == dg.AssetCheckSeverity.WARN


# -- labels ----------------------------------------------------------------------------------


def test_trait_labels_pos_neg_neutral_with_neutral_scored_under_default(tmp_path):
    rows = []
    for p in range(2):
        for q in range(2):
            rows.append(row("pos", p, q, f"Q{q}?", "Ha!", f"Be funny {p}.", system_turn=False))
            rows.append(row("neg", p, q, f"Q{q}?", "No.", f"Be dull {p}.", system_turn=False))
            rows.append(row("neutral", p, q, f"Q{q}?", "Hi.", DEFAULT_PROMPTS[p], system_turn=False))
    scores = {f"{label}_p{p}_q{q}": score for p in range(2) for q in range(2)
              for label, score in (("pos", 90), ("neg", 10), ("default", 40))}
    write_persona(tmp_path, "traits_240", "humorous", rows, scores)
    frame, report = build_persona_dataset(PersonaRef(TRAITS, "model-a", "humorous"), tmp_path)
    assert frame.group_by("label").len().sort("label").rows() == [("neg", 4), ("neutral", 4), ("pos", 4)]
    assert report.scored == 12 and report.responses_without_score == 0 and report.scores_without_response == 0
    assert frame.filter(pl.col("label") == "neutral")["extract_score"].to_list() == [40] * 4
    assert report.instruction_removed == 12 and report.baseline_rows == 4
    neutral_empty = frame.filter((pl.col("label") == "neutral") & (pl.col("prompt_index") == 0))
    assert [m[0]["content"] for m in neutral_empty["messages"].to_list()] == ["Q0?", "Q1?"]
    assert baseline_rows(frame, TRAITS)["label"].unique().to_list() == ["neutral"]


def test_label_outside_the_writers_set_names_file_line_label_and_allowed_set(tmp_path):
    good = row("pos", 0, 0, "Q?", "A.", "Be a pirate.", system_turn=True)
    path = write_persona(tmp_path, "roles_240", "pirate", [good, row("neutral", 0, 0, "Q?", "A.", "", system_turn=True)])
    with pytest.raises(RolloutFormatError, match=rf"{path}:2: label 'neutral' is not one of \['pos', 'default'\]"):
        read_responses(path, ROLES)
    path = write_persona(tmp_path, "traits_240", "humorous", [row("positive", 0, 0, "Q?", "A.", "x", system_turn=False)])
    with pytest.raises(RolloutFormatError,
                       match=rf"{path}:1: label 'positive' is not one of \['pos', 'neg', 'neutral', 'default'\]"):
        read_responses(path, TRAITS)


def test_score_keys_under_a_label_with_no_rows_are_refused(tmp_path):
    rows = [row("pos", 0, q, f"Q{q}?", "Arr.", "Be a pirate.", system_turn=True) for q in range(3)]
    scores = {**{f"pos_p0_q{q}": 3 for q in range(3)}, **{f"default_p0_q{q}": 0 for q in range(3)}}
    write_persona(tmp_path, "roles_240", "pirate", rows, scores)
    with pytest.raises(RolloutFormatError, match=r"pirate.json: 3 score keys \(e.g. 'default_p0_q0'\) are labelled "
                                                 r"'default'.*no such rows, only 'pos' \(3\)"):
        build_persona_dataset(PersonaRef(ROLES, "model-a", "pirate"), tmp_path)


def test_baseline_labels_are_never_kept_for_training():
    for kind, label in ((ROLES, "default"), (TRAITS, "neutral"), (TRAITS, "default")):
        with pytest.raises(SelectionError, match=rf"\['{label}'\]: those rows are baselines"):
            check_selection(SelectionConfig(0, ("pos", label)), kind)
    with pytest.raises(SelectionError, match=r"keep_labels \['positive'\] are not role labels"):
        check_selection(SelectionConfig(3, ("positive",)), ROLES)
    check_selection(SelectionConfig(0, ("pos", "neg")), TRAITS)


# -- older shapes ----------------------------------------------------------------------------


def test_older_score_key_shapes_are_converted(tmp_path):
    path = tmp_path / "scores.json"
    path.write_text(json.dumps({"pos_3": 2, "default_1": 0, "pos_p1_q2": 3}))  # {label}_{question}: prompt 0
    scores, report = read_scores_with_report(path, ROLES)
    assert scores == {"pos_p0_q3": 2, "default_p0_q1": 0, "pos_p1_q2": 3}
    assert report.converted == 2
    path.write_text(json.dumps({"neutral_p0_q1": 55, "neutral_4": "REFUSAL", "pos_p0_q1": 80}))
    assert read_scores(path, TRAITS) == {"default_p0_q1": 55, "default_p0_q4": "REFUSAL", "pos_p0_q1": 80}
    path.write_text(json.dumps({"q3_p1": 3, "q0_p0": 1}))  # assistant-axis scripts/3_judge.py
    assert read_scores(path, ROLES) == {"pos_p1_q3": 3, "pos_p0_q0": 1}
    with pytest.raises(RolloutFormatError, match=r"'q3_p1' has the label-less shape .* scores roles only"):
        read_scores(path, TRAITS)
    path.write_text(json.dumps({"pos_3": 2, "pos_p0_q3": 1}))
    with pytest.raises(RolloutFormatError, match=r"keys 'pos_3' and 'pos_p0_q3' both mean 'pos_p0_q3' but hold "
                                                 r"different scores"):
        read_scores(path, ROLES)
    path.write_text(json.dumps({"neg_p0_q0": 2}))
    with pytest.raises(RolloutFormatError, match=r"key 'neg_p0_q0' has label 'neg'; role score keys are"):
        read_scores(path, ROLES)


def test_label_less_keys_are_refused_when_rows_have_other_labels(tmp_path):
    rows = [row("pos", 0, 0, "Q?", "Arr.", "Be a pirate.", system_turn=True),
            row("default", 0, 0, "Q?", "Hi.", "", system_turn=True)]
    write_persona(tmp_path, "roles_240", "pirate", rows, {"q0_p0": 3})
    with pytest.raises(RolloutFormatError, match=r"cannot tell 'pos' rows from \['default'\] rows; rename them"):
        build_persona_dataset(PersonaRef(ROLES, "model-a", "pirate"), tmp_path)


def test_lines_without_prompt_index_or_question_are_read(tmp_path):
    old = row("pos", 0, 0, "Q0?", "Arr.", "Be a pirate.", system_turn=False)
    del old["prompt_index"], old["question"]
    paired = row("pos", 0, 1, "Q1?", "Arr.", "Be a pirate.", system_turn=True)
    del paired["prompt_index"]
    paired["pair_index"] = 2  # the trait writer's name before traits/rename_field.py
    write_persona(tmp_path, "roles_240", "pirate", [old, paired], {"pos_0": 3, "pos_p2_q1": 2})
    frame, report = build_persona_dataset(PersonaRef(ROLES, "model-a", "pirate"), tmp_path)
    assert frame["prompt_index"].to_list() == [0, 2]
    assert frame["question"].to_list() == ["Q0?", "Q1?"]  # from the user turn, instruction removed
    assert frame["extract_score"].to_list() == [3, 2]
    assert (report.prompt_index_assumed_0, report.prompt_index_from_pair_index, report.questions_from_user_turn) == (1, 1, 1)
    assert report.score_key_shapes == {"label_p_q": 1, "label_q": 1}


def test_several_prompts_without_prompt_index_say_how_to_convert(tmp_path):
    lines = [row("pos", p, 0, "Q?", "Arr.", f"Prompt {p}.", system_turn=True) for p in range(2)]
    for line in lines:
        del line["prompt_index"]
    path = write_persona(tmp_path, "roles_240", "pirate", lines)
    with pytest.raises(RolloutFormatError, match=r":2: duplicate response 'pos_p0_q0' .* no prompt_index, so it is "
                                                 r"read as prompt 0.*add 'prompt_index'"):
        read_responses(path, ROLES)


def test_neutral_and_default_rows_of_one_prompt_collide_on_their_score_key(tmp_path):
    lines = [row("neutral", 0, 0, "Q?", "Hi.", "", system_turn=False), row("default", 0, 0, "Q?", "Hi.", "", system_turn=False)]
    path = write_persona(tmp_path, "traits_240", "humorous", lines)
    with pytest.raises(RolloutFormatError, match=r"'neutral' rows are scored under 'default'"):
        read_responses(path, TRAITS)


# -- the instruction in the user turn ----------------------------------------------------------


def test_instruction_joined_another_way_is_warned_by_the_check(tmp_path, word_tokenizer):
    rows = [row("pos", 0, 0, "Q0?", "Arr.", "Be a pirate.", system_turn=False),
            row("pos", 0, 1, "Q1?", "Arr.", "Be a pirate.", system_turn=False)]
    rows[1]["conversation"][0]["content"] = "Be a pirate. Q1?"  # not the writers' "\n\n"
    write_persona(tmp_path / "data", "roles_240", "pirate", rows, {"pos_p0_q0": 3, "pos_p0_q1": 3})
    ref, store = PersonaRef(ROLES, "model-a", "pirate"), ArtifactStore(tmp_path / "artifacts")
    materialize_persona_dataset(ref, tmp_path / "data", store)
    split = materialize_training_split(ref, store, word_tokenizer, BudgetConfig(train_tokens=1000, validation_tokens=0))
    assert split.details["instruction_removed_rows"] == 1
    assert split.details["rows_starting_with_instruction"] == 1
    assert split.details["rows_starting_with_instruction_examples"] == ["pos_p0_q1"]
    check = {c.check_name: c for c in split_check_results(split.details)}[INSTRUCTION_CHECK]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN


def test_instruction_check_keeps_a_status_per_partition():
    from steering_assets.personas.assets import build_persona_assets

    split = next(a for a in build_persona_assets(ROLES) if isinstance(a, dg.AssetsDefinition)
                 and dg.AssetKey(["roles", "persona_training_split"]) in a.keys)
    spec = next(s for s in split.check_specs if s.name == INSTRUCTION_CHECK)
    assert spec.partitions_def is not None and spec.partitions_def.name == "roles"


# -- layouts ---------------------------------------------------------------------------------


def assistant_axis_tree(root, roles, model="gemma-2-27b", questions=3):
    """responses/{role}.jsonl and scores/{role}.json as assistant-axis pipeline/1_generate.py and
    3_judge.py write them for Gemma-2 (no system role): every row labelled pos, the instruction
    in the user turn, and responses/default.jsonl with 5 prompts and no score file."""
    responses, scores = Path(root) / model / "responses", Path(root) / model / "scores"
    responses.mkdir(parents=True, exist_ok=True)
    scores.mkdir(parents=True, exist_ok=True)
    for role in roles:
        lines = [row("pos", p, q, f"Question {q}?", f"As a {role}: answer {q}.", f"You are a {role}.", system_turn=False)
                 for p in range(2) for q in range(questions)]
        (responses / f"{role}.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
        (scores / f"{role}.json").write_text(json.dumps({f"pos_p{p}_q{q}": (q + p) % 4 for p in range(2) for q in range(questions)}))
    defaults = [row("pos", p, q, f"Question {q}?", "I am an AI.", prompt, system_turn=False)
                for p, prompt in enumerate(DEFAULT_PROMPTS) for q in range(questions)]
    for line in defaults:  # assistant-axis: an empty instruction leaves the question alone
        if not line["system_prompt"]:
            line["conversation"][0]["content"] = line["question"]
    (responses / "default.jsonl").write_text("".join(json.dumps(x) + "\n" for x in defaults))


def persona_subspace_tree(root, roles, model="gemma-2-27b", questions=3):
    """roles_240/{responses,extract_scores} as persona-subspace roles/2_responses.py and 4_judge.py
    write them for a model with a system role: the same pos rows, plus default rows."""
    rows_by_role = {}
    for role in roles:
        lines = [row("pos", p, q, f"Question {q}?", f"As a {role}: answer {q}.", f"You are a {role}.", system_turn=True)
                 for p in range(2) for q in range(questions)]
        lines += [row("default", p, q, f"Question {q}?", "I am an AI.", DEFAULT_PROMPTS[p], system_turn=True)
                  for p in range(2) for q in range(questions)]
        scores = {f"pos_p{p}_q{q}": (q + p) % 4 for p in range(2) for q in range(questions)}
        scores.update({f"default_p{p}_q{q}": 0 for p in range(2) for q in range(questions)})
        write_persona(root, "roles_240", role, lines, scores, model=model)
        rows_by_role[role] = lines
    return rows_by_role


def test_assistant_axis_layout_is_discovered_as_roles(tmp_path):
    assistant_axis_tree(tmp_path, ["pirate", "chef"])
    roles = discover_personas(tmp_path, ROLES)
    assert [r.partition_key for r in roles.personas] == ["gemma-2-27b/chef", "gemma-2-27b/pirate"]
    assert [r.partition_key for r in roles.baselines] == ["gemma-2-27b/default"]
    assert set(roles.layouts.values()) == {"assistant-axis"} and not roles.rejected
    assert discover_personas(tmp_path, TRAITS).personas == []
    ref = roles.personas[1]
    assert ref.layout(tmp_path) is ASSISTANT_AXIS
    assert ref.scores_path(tmp_path) == tmp_path / "gemma-2-27b" / "scores" / "pirate.json"
    frame, report = build_persona_dataset(roles.baselines[0], tmp_path)  # no score file for default
    assert frame.height == 15 and report.layout == "assistant-axis" and report.scores_path == ""
    assert {m[0]["content"] for m in frame["messages"].to_list()} == {f"Question {q}?" for q in range(3)}


def test_layout_is_in_the_metadata_and_observations(tmp_path):
    assistant_axis_tree(tmp_path / "data", ["pirate"])
    persona_subspace_tree(tmp_path / "data", ["chef"], model="qwen-3-32b")
    store = ArtifactStore(tmp_path / "artifacts")
    for model, name, layout in (("gemma-2-27b", "pirate", "assistant-axis"), ("qwen-3-32b", "chef", "persona-subspace")):
        result = materialize_persona_dataset(PersonaRef(ROLES, model, name), tmp_path / "data", store)
        assert result.details["layout"] == layout
    with dg.instance_for_test() as instance:
        scan = sync_partitions(instance, tmp_path / "data")
        # assistant-axis's responses/default.jsonl is a role partition: the default assistant's role vector; a
        # persona-subspace tree with no baseline file gets one too (its default rows live inside the role files).
        assert instance.get_dynamic_partitions("roles") == ["gemma-2-27b/pirate", "qwen-3-32b/chef", "gemma-2-27b/default",
                                                            "qwen-3-32b/default"]
        assert {o.partition: o.metadata["layout"].value for o in scan.observations} == {
            "gemma-2-27b/pirate": "assistant-axis", "qwen-3-32b/chef": "persona-subspace", "gemma-2-27b/default": "assistant-axis"}
        assert scan.layouts["roles"] == {"assistant-axis": 2, "persona-subspace": 1} and scan.problem is None


def test_one_persona_in_both_layouts_is_refused_with_both_paths(tmp_path):
    assistant_axis_tree(tmp_path, ["pirate"])
    persona_subspace_tree(tmp_path, ["pirate"])
    roles = discover_personas(tmp_path, ROLES)
    assert [r.name for r in roles.personas] == []
    assert len(roles.rejected) == 1 and "keep one of the two layouts" in roles.rejected[0][1]
    with pytest.raises(RolloutFormatError, match=r"responses in two layouts .*roles_240/responses/pirate.jsonl"):
        PersonaRef(ROLES, "gemma-2-27b", "pirate").responses_path(tmp_path)


def test_data_root_with_neither_layout_says_what_was_expected(tmp_path):
    (tmp_path / "gemma-2-27b" / "outputs").mkdir(parents=True)
    (tmp_path / "notes.txt").write_text("x")
    problem = data_root_problem(tmp_path)
    assert "no rollouts under" in problem and "roles_240/responses/<name>.jsonl" in problem
    assert "{source_model}/responses/<name>.jsonl" in problem and "gemma-2-27b/, notes.txt" in problem
    with dg.instance_for_test() as instance:
        context = dg.build_sensor_context(instance=instance, resources={"rollouts": PersonaRollouts(data_root=str(tmp_path))})
        result = persona_discovery_sensor(context)
        assert not result.dynamic_partitions_requests and result.skip_reason.skip_message == problem
        assert scan_data_root(instance, tmp_path, {}).problem == problem


def test_data_root_set_one_level_too_deep_is_named(tmp_path):
    persona_subspace_tree(tmp_path, ["pirate"])
    model_folder = tmp_path / "gemma-2-27b"
    roles = discover_personas(model_folder, ROLES)
    assert roles.personas == [] and "set PERSONA_DATA_ROOT to" in roles.rejected[0][1]
    problem = data_root_problem(model_folder / "roles_240")
    assert "looks like a source-model folder" in problem


def test_other_files_in_a_responses_folder_are_reported(tmp_path):
    path = write_persona(tmp_path, "traits_240", "humorous", [row("pos", 0, 0, "Q?", "Ha.", "x", system_turn=False)])
    shutil.copy(path, path.with_suffix(".jsonl.backup"))  # what traits/migrate_responses.py leaves behind
    traits = discover_personas(tmp_path, TRAITS)
    assert [r.name for r in traits.personas] == ["humorous"]
    assert [(p.name, "not a responses file" in reason) for p, reason in traits.rejected] == [("humorous.jsonl.backup", True)]


# -- the same datasets from both layouts at full scale --------------------------------------------


def test_275_roles_build_the_same_datasets_in_both_layouts(tmp_path, shared_persona_names, word_tokenizer):
    roles, traits = shared_persona_names
    names = sorted(roles)
    assistant_axis_tree(tmp_path / "aa", names)
    persona_subspace_tree(tmp_path / "ps", names)
    found = {}
    for layout_name in ("aa", "ps"):
        discovery = discover_personas(tmp_path / layout_name, ROLES)
        assert len(discovery.personas) == 275 and not discovery.rejected
        found[layout_name] = discovery
    assert [b.name for b in found["aa"].baselines] == ["default"] and found["ps"].baselines == []
    budget = BudgetConfig(train_tokens=60, validation_tokens=20, seed=7)
    selection = SelectionConfig(min_score=2, keep_labels=("pos",))
    for aa_ref, ps_ref in zip(found["aa"].personas, found["ps"].personas):
        assert aa_ref.partition_key == ps_ref.partition_key
        aa_frame, aa_report = build_persona_dataset(aa_ref, tmp_path / "aa")
        ps_frame, ps_report = build_persona_dataset(ps_ref, tmp_path / "ps")
        assert (aa_report.layout, ps_report.layout) == ("assistant-axis", "persona-subspace")
        assert aa_report.instruction_removed == 6 and ps_report.instruction_removed == 0
        assert ps_report.baseline_rows == 6 and baseline_rows(ps_frame, ROLES).height == 6
        aa_split = build_training_split(aa_frame, word_tokenizer, selection, budget)
        ps_split = build_training_split(ps_frame, word_tokenizer, selection, budget)
        same = ["prompt_index", "question_index", "question", "messages", "extract_score", "length"]
        assert aa_split.train.select(same).equals(ps_split.train.select(same))
        assert aa_split.validation.select(same).equals(ps_split.validation.select(same))
        assert aa_split.train.height > 0 and set(ps_split.train["label"]) == {"pos"}
        assert ps_split.dropped.get("wrong_label") == 6  # the default rows


def test_240_traits_with_neutral_rows_keep_only_pos_rows(tmp_path, shared_persona_names, word_tokenizer):
    _, traits = shared_persona_names
    for name in sorted(traits):
        lines = [row(label, 0, q, f"Q{q}?", f"{label} answer {q}.", "" if label == "neutral" else f"Be {name}.",
                     system_turn=False) for label in ("pos", "neg", "neutral") for q in range(2)]
        scores = {f"{'default' if label == 'neutral' else label}_p0_q{q}": 80 for label in ("pos", "neg", "neutral") for q in range(2)}
        write_persona(tmp_path, "traits_240", name, lines, scores, model="gemma-2-27b")
    discovery = discover_personas(tmp_path, TRAITS)
    assert len(discovery.personas) == 240
    for ref in discovery.personas[:: 24]:
        frame, report = build_persona_dataset(ref, tmp_path)
        assert report.scored == 6 and report.instruction_removed == 6
        split = build_training_split(frame, word_tokenizer, SelectionConfig.defaults_for(TRAITS), BudgetConfig(1000, 0))
        assert split.train["label"].to_list() == ["pos", "pos"]
        assert sorted(m[0]["content"] for m in split.train["messages"].to_list()) == ["Q0?", "Q1?"]


def test_role_scores_in_the_judges_default_extract_labels_folder_are_read(tmp_path):
    # persona-subspace roles/4_judge.py writes to roles_240/extract_labels unless --output-dir is given.
    rows = [row("pos", 0, 0, "Q?", "Arr.", "Be a pirate.", system_turn=True)]
    write_persona(tmp_path, "roles_240", "pirate", rows)
    labels = tmp_path / "model-a" / "roles_240" / "extract_labels"
    labels.mkdir()
    (labels / "pirate.json").write_text(json.dumps({"pos_p0_q0": 3}))
    ref = PersonaRef(ROLES, "model-a", "pirate")
    assert ref.layout(tmp_path) is PERSONA_SUBSPACE
    frame, report = build_persona_dataset(ref, tmp_path)
    assert frame["extract_score"].to_list() == [3] and report.scores_path == str(labels / "pirate.json")
    (tmp_path / "model-a" / "roles_240" / "extract_scores").mkdir()
    (tmp_path / "model-a" / "roles_240" / "extract_scores" / "pirate.json").write_text("{}")
    with pytest.raises(RolloutFormatError, match=r"score files in two folders .*; keep one"):
        build_persona_dataset(ref, tmp_path)


def test_a_gemma_rollout_runs_through_the_dagster_job(tmp_path, word_tokenizer):
    """The fixture tree through sensor-free sync and the roles job: layout, unwrapped rows and the
    per-partition instruction check in Dagster's own records."""
    from steering_assets.definitions import build_definitions, persona_job_name

    root = fixture_root("instruction_in_user_turn")
    word_tokenizer.save_pretrained(tmp_path / "tokenizer")
    defs = build_definitions(str(root), str(tmp_path / "artifacts"), str(tmp_path / "tokenizer"))
    with dg.instance_for_test() as instance:
        sync_partitions(instance, root)
        run_config = {"ops": {"roles__persona_training_split": {"config": {"train_tokens": 1000, "validation_tokens": 0}}}}
        result = defs.resolve_job_def(persona_job_name("roles")).execute_in_process(
            instance=instance, partition_key="gemma-2-27b/pirate", run_config=run_config)
        assert result.success
        check = {e.check_name: e for e in result.get_asset_check_evaluations()}[INSTRUCTION_CHECK]
        assert check.passed and check.partition == "gemma-2-27b/pirate"
        dataset = instance.fetch_materializations(dg.AssetKey(["roles", "persona_dataset"]), limit=1).records[0]
        metadata = dataset.asset_materialization.metadata
        assert metadata["layout"].value == "persona-subspace"
        assert metadata["instruction_removed_from_user_turn"].value == 1
        assert metadata["rows_by_label"].value == {"pos": 1}
        bad = {"ops": {"roles__persona_training_split": {"config": {"keep_labels": ["pos", "default"]}}}}
        failed = defs.resolve_job_def(persona_job_name("roles")).execute_in_process(
            instance=instance, partition_key="gemma-2-27b/pirate", run_config=bad, raise_on_error=False)
        assert not failed.success
        from steering_assets.core.progress import failure_message

        failure = next(e for e in failed.all_events if e.is_step_failure)
        assert "those rows are baselines" in failure_message(failure)
