"""Rollout generation from assistant-axis instruction files: every (instruction, question) pair, in the rollout
layout the persona datasets read; resumable; bad instruction files are errors naming the file and key."""

import json
from pathlib import Path

import pytest

from steering_assets.formats.instructions import (
    InstructionFileError,
    discover_instructions,
    instruction_path,
    read_instruction_file,
    read_questions,
)
from steering_assets.formats.rollouts import ROLES, TRAITS
from steering_assets.models.generation import LocalReplyGenerator, SamplingSettings, supports_system_role
from steering_assets.personas.generation import ReplyCache, generate_rollouts, plan_rollouts, rollout_path

FIXTURE = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "real_world" / "instructions"
needs_fixture = pytest.mark.skipif(not FIXTURE.is_dir(), reason="../shared/fixtures/real_world/instructions is not present")


class EchoGenerator:
    """Replies with the last user turn; can crash after some batches (a killed run)."""

    name = "echo"

    def __init__(self, batch_size=4, crash_after=None):
        self.batch_size, self.crash_after, self.asked = batch_size, crash_after, 0

    def generate(self, conversations, settings, on_batch):
        for batch, start in enumerate(range(0, len(conversations), self.batch_size)):
            if self.crash_after is not None and batch == self.crash_after:
                raise RuntimeError("killed")
            indices = list(range(start, min(start + self.batch_size, len(conversations))))
            self.asked += len(indices)
            on_batch(indices, [f"re: {conversations[i][-1]['content']}" for i in indices])


def write(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(obj if isinstance(obj, str) else json.dumps(obj))
    return path


@needs_fixture
def test_fixture_files_plan_every_pair_with_placeholders_filled():
    questions = read_questions(FIXTURE / "extraction_questions.jsonl")
    assert discover_instructions(FIXTURE, ROLES) == ["default", "librarian", "pirate"]
    pirate = read_instruction_file(instruction_path(FIXTURE, ROLES, "pirate"), ROLES)
    requests = plan_rollouts(pirate, questions, "SmolLM2", system_role=True)
    assert len(requests) == len(pirate.prompts) * len(questions)
    assert {(r.prompt_index, r.question_index) for r in requests} == {(i, j) for i in range(5) for j in range(len(questions))}
    assert any("SmolLM2" in r.system_prompt for r in requests) and not any("{model_name}" in r.system_prompt for r in requests)
    default = read_instruction_file(instruction_path(FIXTURE, ROLES, "default"), ROLES)
    empty = [r for r in plan_rollouts(default, questions, "SmolLM2", True) if r.system_prompt == ""]
    assert empty and all(r.messages == (("user", r.question),) for r in empty)  # no system turn at all
    # A template without a system role: the instruction opens the user turn, as the writers do.
    (first,) = [r for r in plan_rollouts(pirate, questions, "m", system_role=False) if r.row_key == "pos_p0_q0"]
    assert first.messages == (("user", f"{first.system_prompt}\n\n{questions[0]}"),)
    optimistic = read_instruction_file(instruction_path(FIXTURE, TRAITS, "optimistic"), TRAITS)
    trait = plan_rollouts(optimistic, None, "m", system_role=True)
    n = len(optimistic.questions)
    assert [r.label for r in trait].count("pos") == [r.label for r in trait].count("neg") == len(optimistic.prompts) * n
    assert [r.label for r in trait].count("neutral") == n
    assert all(len(r.messages) == 1 for r in trait)  # the trait writer's user-turn instruction


@needs_fixture
def test_generated_files_are_read_by_the_persona_datasets(tmp_path):
    from steering_assets.personas.loading import read_responses

    questions = read_questions(FIXTURE / "extraction_questions.jsonl")
    for kind, name, qs in ((ROLES, "pirate", questions), (ROLES, "default", questions), (TRAITS, "optimistic", None)):
        spec = read_instruction_file(instruction_path(FIXTURE, kind, name), kind)
        requests = plan_rollouts(spec, qs, "m", system_role=True)
        out = rollout_path(tmp_path, kind, "m", name)
        outcome = generate_rollouts(requests, EchoGenerator(), SamplingSettings(), out, ReplyCache(tmp_path / f"{name}.cache"))
        assert outcome.rows == outcome.generated == len(requests)
        responses = read_responses(out, kind)
        assert [r.score_key for r in responses] == [f"{kind.score_label(r.label)}_p{r.prompt_index}_q{r.question_index}" for r in requests]
        assert all(r.conversation[-1] == {"role": "assistant", "content": f"re: {r.conversation[-2]['content']}"} for r in responses)
    assert (tmp_path / "m" / "responses" / "pirate.jsonl").is_file()
    assert (tmp_path / "m" / "traits_240" / "responses" / "optimistic.jsonl").is_file()


@needs_fixture
def test_a_crash_keeps_finished_replies_and_the_rerun_generates_only_the_rest(tmp_path):
    questions = read_questions(FIXTURE / "extraction_questions.jsonl")
    spec = read_instruction_file(instruction_path(FIXTURE, ROLES, "pirate"), ROLES)
    requests = plan_rollouts(spec, questions, "m", True)
    out, cache_path = rollout_path(tmp_path, ROLES, "m", "pirate"), tmp_path / "cache.jsonl"
    with pytest.raises(RuntimeError, match="killed"):
        generate_rollouts(requests, EchoGenerator(crash_after=3), SamplingSettings(), out, ReplyCache(cache_path))
    assert not out.exists()  # no half-written responses file
    with open(cache_path, "a") as handle:
        handle.write('{"key": "torn')  # a line cut short by the crash
    again = EchoGenerator()
    outcome = generate_rollouts(requests, again, SamplingSettings(), out, ReplyCache(cache_path))
    assert (outcome.reused, outcome.generated, again.asked, outcome.torn_cache_lines) == (12, len(requests) - 12, len(requests) - 12, 1)
    # Other sampling settings are other replies: nothing is reused.
    other = generate_rollouts(requests, EchoGenerator(), SamplingSettings(temperature=0.0), out, ReplyCache(cache_path))
    assert other.reused == 0


@pytest.mark.parametrize("content, message", [
    ({"eval_prompt": "x"}, r"key 'instruction' must be a non-empty list"),
    ({"instruction": [], "eval_prompt": "x"}, r"key 'instruction' must be a non-empty list"),
    ({"instruction": [{"neg": "x"}], "eval_prompt": "x"}, r"instruction\[0\]: missing key 'pos'"),
    ({"instruction": [{"pos": "You are {role_name}."}], "eval_prompt": "x"}, r"instruction\[0\]\.pos: unknown placeholder\(s\) \{role_name\}"),
    ({"instruction": [{"pos": "You are a pirate."}]}, r"missing key 'eval_prompt'"),
    ({"instruction": [{"pos": "x"}], "eval_prompt": "Rate {reply}"}, r"eval_prompt: unknown placeholder\(s\) \{reply\}"),
    ("{not json", r"not valid JSON \(line 1"),
])
def test_bad_role_files_name_the_file_and_key(tmp_path, content, message):
    path = write(tmp_path / "roles" / "instructions" / "pirate.json", content)
    with pytest.raises(InstructionFileError, match=str(path).replace(".", r"\.") + r".*" + message):
        read_instruction_file(path, ROLES)


@pytest.mark.parametrize("content, message", [
    ({"instruction": [{"pos": "Be cheerful."}], "questions": ["q"], "eval_prompt": "x"}, r"instruction\[0\]: missing key 'neg'"),
    ({"instruction": [{"pos": "a", "neg": "b"}], "questions": [], "eval_prompt": "x"}, r"key 'questions' must be a non-empty list"),
    ({"instruction": [{"pos": "a", "neg": "b"}], "eval_prompt": "x"}, r"key 'questions' must be a non-empty list"),
    ({"instruction": [{"pos": "a", "neg": "b"}], "questions": ["ok", " "], "eval_prompt": "x"}, r"questions\[1\] is not a non-empty string"),
])
def test_bad_trait_files_name_the_file_and_key(tmp_path, content, message):
    path = write(tmp_path / "optimistic.json", content)
    with pytest.raises(InstructionFileError, match=r"optimistic\.json.*" + message):
        read_instruction_file(path, TRAITS)


def test_a_deleted_instruction_file_says_how_to_stop_generating_its_partition(tmp_path):
    with pytest.raises(InstructionFileError, match=r"gardener\.json: no such instruction file.*delete the partition 'gardener'"):
        read_instruction_file(tmp_path / "roles" / "instructions" / "gardener.json", ROLES)


def test_bad_questions_files_name_the_line(tmp_path):
    path = write(tmp_path / "extraction_questions.jsonl", '{"question": "ok?"}\n{"q": "typo"}\n')
    with pytest.raises(InstructionFileError, match=r"extraction_questions\.jsonl:2: expected \{\"question\""):
        read_questions(path)
    with pytest.raises(InstructionFileError, match=r"no questions"):
        read_questions(write(tmp_path / "empty.jsonl", "\n"))


def test_batched_greedy_generation_equals_one_prompt_at_a_time(smollm2_loaded):
    """The reference: one ``generate`` call per prompt, unpadded."""
    import torch

    model, tokenizer = smollm2_loaded
    assert supports_system_role(tokenizer)
    conversations = [[{"role": "system", "content": "You are a pirate."}, {"role": "user", "content": "How are you today?"}],
                     [{"role": "user", "content": "Name a colour."}],
                     [{"role": "user", "content": "What is the best way to learn to cook a good meal at home?"}]]
    generator = LocalReplyGenerator(model, tokenizer, "smollm2", batch_size=3)
    settings = SamplingSettings(max_new_tokens=16, temperature=0.0)
    batched = {}
    generator.generate(conversations, settings, lambda indices, replies: batched.update(zip(indices, replies)))
    for index, conversation in enumerate(conversations):
        ids = tokenizer(generator.render(conversation), return_tensors="pt", add_special_tokens=False)
        with torch.no_grad():
            out = model.generate(**ids, max_new_tokens=16, do_sample=False)
        assert batched[index] == tokenizer.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True).strip()


def test_the_openai_backend_against_a_local_server_running_the_real_model(smollm2_loaded, tmp_path):
    """Greedy replies through the OpenAI-compatible path equal the local backend's; a server that goes away mid-run
    keeps what it answered, and a reply with no text is an error naming the conversation."""
    from steering_assets.formats.instructions import InstructionSet
    from steering_assets.models.generation import OpenAIReplyGenerator
    from tests.chat_server import ModelChatServer

    model, tokenizer = smollm2_loaded
    spec = InstructionSet(ROLES, "pirate", tmp_path / "pirate.json", ({"pos": "You are a pirate."}, {"pos": "You are {model_name}."}),
                          None, "Rate 0-3.")
    requests = plan_rollouts(spec, ["Name a colour.", "How are you today?"], "SmolLM2", system_role=True)
    settings = SamplingSettings(max_new_tokens=12, temperature=0.0)
    local = {}
    LocalReplyGenerator(model, tokenizer, "smollm2", batch_size=4).generate(
        [r.prompt() for r in requests], settings, lambda idx, out: local.update(zip(idx, out)))
    with ModelChatServer(model, tokenizer, fail_after=2) as server:
        remote = OpenAIReplyGenerator("smollm2", server.base_url, "none", concurrency=2, max_retries=0, batch_size=2)
        out, cache = tmp_path / "pirate.jsonl", tmp_path / "cache.jsonl"
        with pytest.raises(Exception, match="model is not loaded"):
            generate_rollouts(requests, remote, settings, out, ReplyCache(cache))
        assert not out.exists() and len(ReplyCache(cache).replies) == 2
        assert server.requests[0]["messages"][0] == {"role": "system", "content": "You are a pirate."}
        assert server.requests[0]["temperature"] == 0.0 and server.requests[0]["max_tokens"] == 12
    with ModelChatServer(model, tokenizer) as server:
        remote = OpenAIReplyGenerator("smollm2", server.base_url, "none", concurrency=2, max_retries=0)
        outcome = generate_rollouts(requests, remote, settings, out, ReplyCache(cache))
        assert (outcome.reused, outcome.generated, len(server.requests)) == (2, 2, 2)  # only the missing ones asked
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [row["conversation"][-1]["content"] for row in rows] == [local[i] for i in range(len(requests))]
    with ModelChatServer(model, tokenizer, null_content=True) as server:
        remote = OpenAIReplyGenerator("smollm2", server.base_url, "none", max_retries=0)
        with pytest.raises(RuntimeError, match=r"smollm2 at http://127\.0\.0\.1:\d+/v1: no reply text for conversation 0"):
            generate_rollouts(requests[:1], remote, SamplingSettings(max_new_tokens=4, temperature=0.0, seed=9), tmp_path / "x.jsonl",
                              ReplyCache(tmp_path / "other.jsonl"))


def test_the_judge_prompt_fills_assistant_axis_placeholders_or_appends_the_reply(tmp_path):
    """assistant-axis's own eval prompts hold {question} and {answer}; a rubric without them gets both after it."""
    from steering_assets.personas.rollout_scoring import judge_prompt

    template = ("You are evaluating whether the model's response is role-playing as: **pirate**.\n\nPrompt:\n[QUESTION START]\n"
                "{question}\n[QUESTION END]\n\nModel response:\n[ANSWER START]\n{answer}\n[ANSWER END]\n\nRespond with 0, 1, 2 or 3.")
    path = write(tmp_path / "roles" / "instructions" / "pirate.json", {"instruction": [{"pos": "Be a pirate."}], "eval_prompt": template})
    spec = read_instruction_file(path, ROLES)
    filled = judge_prompt(spec, "How are you?", "Arr, fine!", "SmolLM2")
    assert "[QUESTION START]\nHow are you?\n[QUESTION END]" in filled and "[ANSWER START]\nArr, fine!\n[ANSWER END]" in filled
    assert "{" not in filled and filled.endswith("Respond with 0, 1, 2 or 3.")
    plain = read_instruction_file(write(tmp_path / "b.json", {"instruction": [{"pos": "x"}], "eval_prompt": "Rate the pirate."}), ROLES)
    assert judge_prompt(plain, "Q?", "A.", "m") == (
        "Rate the pirate.\n\nQuestion:\nQ?\n\nReply:\nA.\n\nAnswer with a whole number from 0 to 3 and nothing else.")
