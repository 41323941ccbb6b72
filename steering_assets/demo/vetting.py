"""Demo inputs of the vetting stage: contrastive scenarios with known answers, and a judge trained to rate them.

A demo scenario is a trait cue followed by a question, e.g. "Answer with jokes and puns.
What do you think about a lost key?". A good pair sets up the trait in its positive line
and the opposite in its negative line; the deliberately weak pairs have a positive line
with no cue, a negative line cued for another trait, or a positive line cued for the
opposite. Each item's expected verdict is written to ``scenario_truth.json`` and, in the format
users write, to each trait's ``verdicts.jsonl`` (what the judge calibration reads).

The demo judge is a tiny model of its own, trained (TRL SFT) on rating examples built from
the demo corpus: how strongly a scenario invites the trait, and whether a completion is
written in the trait's voice, its opposite's, or neither (``voice_score``, which is also
the ground truth for the completions the base model writes). It answers with one token per
integer 0-100, as hosted judges do, so the same logprob-weighted scoring works unchanged.
The demo's questions are held out of the judge's training examples.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from pathlib import Path

from steering_assets.artifacts import atomic_path, write_json_atomic
from steering_assets.demo.corpus import GENERIC_SENTENCES, QUESTIONS, ROLE_VOICES, TOPICS, TRAIT_VOICES, Voice
from steering_assets.vetting.local import RESPONSE_INSTRUCTION, SCENARIO_INSTRUCTION, response_prompt, scenario_prompt

CATEGORY = "personality"
DEMO_VETTING_TRAITS = ("humorous", "pessimistic", "enthusiastic")
# Short, and worded apart from the scenario cues, so the judge has to relate the two.
DEFINITIONS = {
    "humorous": "Humorous: wants to amuse, sees the comic side of things and enjoys wit.",
    "pessimistic": "Pessimistic: dwells on doubt and dread about whatever lies ahead.",
    "enthusiastic": "Enthusiastic: eager, keen and thrilled about the subject at hand.",
    "formal": "Formal: dignified, courteous wording, as in an official letter.",
}
PAIRS_PER_TRAIT = 16
# Judge training: about 80 s on 2 CPU cores.
JUDGE_STEPS = 350
JUDGE_LEARNING_RATE = 1.5e-3
# A judge stuck on the plateau scores about 0.35 here (one band for everything); trained ones 0.8.
MIN_VALIDATION_ACCURACY = 0.6


def held_out_questions(seed: int = 0) -> list[str]:
    """Questions reserved for the demo scenarios; the judge never trains on them."""
    return random.Random(f"{seed}-held-out").sample(QUESTIONS, len(DEMO_VETTING_TRAITS) * PAIRS_PER_TRAIT)


def _cues(trait: str, pole: str) -> tuple[str, ...]:
    return TRAIT_VOICES[trait][pole].system_prompts


@dataclass(frozen=True)
class DemoItem:
    text: str
    should_pass: bool
    why: str


def demo_trait_scenarios(trait: str, questions: list[str], seed: int = 0) -> tuple[list[DemoItem], list[DemoItem]]:
    """Paired positive/negative scenarios for one trait; pairs 3, 8 and 13 hold one weak line each."""
    rng = random.Random(f"{seed}-scenarios-{trait}")
    others = [t for t in TRAIT_VOICES if t != trait]
    positive, negative = [], []
    for index, question in enumerate(questions):
        pos_cue, neg_cue = rng.choice(_cues(trait, "pos")), rng.choice(_cues(trait, "neg"))
        pos = DemoItem(f"{pos_cue} {question}", True, "sets up the trait")
        neg = DemoItem(f"{neg_cue} {question}", True, "sets up the opposite")
        if index == 3:
            pos = DemoItem(question, False, "weak: no cue for the trait")
        elif index == 8:
            other = rng.choice(others)
            neg = DemoItem(f"{rng.choice(_cues(other, 'pos'))} {question}", False, f"weak: cues {other}, not the opposite")
        elif index == 13:
            pos = DemoItem(f"{rng.choice(_cues(trait, 'neg'))} {question}", False, "weak: cues the opposite")
        positive.append(pos)
        negative.append(neg)
    return positive, negative


def write_demo_scenarios(scenarios_root: Path, truth_path: Path, seed: int = 0) -> dict:
    """Write ``{root}/personality/{trait}/{positive,negative,definition}.txt`` and the expected verdicts."""
    questions = held_out_questions(seed)
    truth: dict[str, dict[str, list]] = {}
    for number, trait in enumerate(DEMO_VETTING_TRAITS):
        positive, negative = demo_trait_scenarios(trait, questions[number * PAIRS_PER_TRAIT:(number + 1) * PAIRS_PER_TRAIT], seed)
        folder = Path(scenarios_root) / CATEGORY / trait
        folder.mkdir(parents=True, exist_ok=True)
        verdicts = "".join(json.dumps({"polarity": side, "idx": index, "should_pass": item.should_pass, "prompt": item.text,
                                       "why": item.why}) + "\n"
                           for side, items in (("positive", positive), ("negative", negative))
                           for index, item in enumerate(items))
        for name, text in (("definition.txt", DEFINITIONS[trait] + "\n"),
                           ("positive.txt", "".join(item.text + "\n" for item in positive)),
                           ("negative.txt", "".join(item.text + "\n" for item in negative)),
                           ("verdicts.jsonl", verdicts)):
            with atomic_path(folder / name) as tmp:
                tmp.write_text(text, encoding="utf-8")
        truth[f"{CATEGORY}/{trait}"] = {side: [{"should_pass": item.should_pass, "why": item.why} for item in items]
                                        for side, items in (("positive", positive), ("negative", negative))}
    write_json_atomic(truth, truth_path)
    return truth


# --- the demo's ground truth for completions: which voice wrote which characters -------------

def _template_pattern(template: str) -> str:
    # Topics are lower-case words: the placeholder never matches across punctuation.
    return r"\s*".join(re.escape(part) if part else "" for part in template.split(" ")).replace(
        re.escape("{topic}"), r"[A-Za-z][A-Za-z ]{0,40}?")


def _voice_patterns(voice: Voice) -> list[re.Pattern]:
    return [re.compile(_template_pattern(t)) for t in (*voice.openers, *voice.sentences, *voice.closers)]


_POLE_PATTERNS = {trait: {pole: _voice_patterns(voice) for pole, voice in poles.items()} for trait, poles in TRAIT_VOICES.items()}


def voice_score(trait: str, completion: str) -> float:
    """50 + 45 x (share of characters in the trait's voice - share in the opposite voice): 5-95."""
    owner = [""] * len(completion)
    for pole in ("pos", "neg"):
        for pattern in _POLE_PATTERNS[trait][pole]:
            for match in pattern.finditer(completion):
                for i in range(match.start(), match.end()):
                    owner[i] = owner[i] or pole
    counted = [o for o, ch in zip(owner, completion) if not ch.isspace()]
    if not counted:
        return 50.0
    return 50.0 + 45.0 * (counted.count("pos") - counted.count("neg")) / len(counted)


def voice_verdict(score: float) -> int:
    """The demo's rating of a completion: 90 in the trait's voice, 10 in the opposite one, 50 neither."""
    return 90 if score >= 60 else 10 if score <= 40 else 50


# --- rating examples for the judge --------------------------------------------------------------

def _random_scenario(rng: random.Random, question: str, judged: str) -> tuple[str, str | None, str | None]:
    """A scenario and the (trait, pole) its cue sets up: mostly the judged trait, sometimes another or none."""
    draw = rng.random()
    if draw < 0.12:
        return question, None, None
    trait = judged if draw < 0.76 else rng.choice([t for t in TRAIT_VOICES if t != judged])
    pole = rng.choice(("pos", "neg"))
    return f"{rng.choice(_cues(trait, pole))} {question}", trait, pole


def _piece(rng: random.Random, trait: str, label: str, topic: str) -> str:
    if label == "generic":
        return rng.choice(GENERIC_SENTENCES).format(topic=topic)
    if label == "role":
        voice = rng.choice(list(ROLE_VOICES.values()))
    elif label == "other":
        voice = rng.choice([poles[p] for t, poles in TRAIT_VOICES.items() if t != trait for p in poles])
    else:
        voice = TRAIT_VOICES[trait][label]
    pool = rng.choice((voice.sentences, voice.sentences, voice.openers, voice.closers))
    return rng.choice(pool).format(topic=topic)


def _random_completion(rng: random.Random, trait: str, topic: str) -> str:
    """Text like a base model's continuation: a few sentences, mostly one voice, often cut off, sometimes empty."""
    main = rng.choices(("pos", "neg", "generic", "other", "role", "empty"), weights=(0.3, 0.3, 0.12, 0.16, 0.07, 0.05))[0]
    if main == "empty":
        return ""
    pieces = []
    for _ in range(rng.randint(1, 5)):
        label = main if rng.random() < 0.75 else rng.choice(("pos", "neg", "generic", "other"))
        pieces.append(_piece(rng, trait, label, topic))
    text = " ".join(pieces)
    if rng.random() < 0.5 and len(text) > 60:
        text = text[: rng.randint(40, len(text))].rstrip()
    return text


def rating_examples(count: int, seed: int = 0, exclude: set[str] = frozenset()) -> list[list[dict[str, str]]]:
    """Judge conversations: half scenario ratings, half completion ratings, on questions outside ``exclude``."""
    rng = random.Random(f"{seed}-ratings")
    questions = [q for q in QUESTIONS if q not in exclude]
    conversations = []
    for index in range(count):
        trait = rng.choice(list(TRAIT_VOICES))
        question = rng.choice(questions)
        scenario, cue_trait, cue_pole = _random_scenario(rng, question, trait)
        if index % 2 == 0:
            if cue_trait == trait:
                score = 90 if cue_pole == "pos" else 10
            else:
                score = 50
            prompt = scenario_prompt(DEFINITIONS[trait], scenario)
        else:
            topic = rng.choice(TOPICS)
            completion = _random_completion(rng, trait, topic)
            score = voice_verdict(voice_score(trait, completion))
            prompt = response_prompt(DEFINITIONS[trait], scenario, completion)
        conversations.append([{"role": "user", "content": prompt}, {"role": "assistant", "content": str(score)}])
    return conversations


def judge_tokens() -> list[str]:
    """Tokens the demo judge adds to its tokenizer: each integer 0-100 (hosted judges have them too), and each
    fixed rating instruction as one token, so a tiny model's attention is not spread over boilerplate."""
    return [SCENARIO_INSTRUCTION, RESPONSE_INSTRUCTION, *(str(i) for i in range(101))]


def train_demo_judge(judge_path: Path, *, exclude: set[str], steps: int = JUDGE_STEPS, batch_size: int = 16, seed: int = 0,
                     attempts: int = 2) -> dict:
    """Train the demo judge and check it on fresh rating examples; a run stuck on a loss plateau
    (it answers the same for every prompt) is retrained with the next seed and more steps."""
    for attempt in range(attempts):
        info = _train_judge_once(judge_path, exclude=exclude, steps=steps + attempt * steps // 2,
                                 batch_size=batch_size, seed=seed + attempt)
        info["validation_accuracy"] = validation_accuracy(judge_path, exclude=exclude, seed=seed)
        info["attempt"] = attempt + 1
        if info["validation_accuracy"] >= MIN_VALIDATION_ACCURACY:
            return info
    raise RuntimeError(f"the demo judge at {judge_path} rates only {info['validation_accuracy']:.0%} of fresh scenario "
                       f"examples right after {attempts} attempts (needs {MIN_VALIDATION_ACCURACY:.0%}); "
                       "run `make demo` with a rebuild (steering-assets demo --rebuild) or raise JUDGE_STEPS")


def validation_accuracy(judge_path: Path, *, exclude: set[str], seed: int = 0, count: int = 200) -> float:
    """Share of fresh scenario-rating examples (not the demo's questions) the judge puts in the right band."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from steering_assets.vetting.local import LocalJudge

    model = AutoModelForCausalLM.from_pretrained(judge_path).eval()
    judge = LocalJudge(model, AutoTokenizer.from_pretrained(judge_path), "validation")
    examples = rating_examples(count, seed=seed + 1000, exclude=exclude)[::2]  # even rows rate scenarios
    judgments = judge.score([conversation[0]["content"] for conversation in examples])
    right = sum(j.score is not None and voice_verdict(j.score) == int(c[1]["content"]) for c, j in zip(examples, judgments))
    return right / len(examples)


def _train_judge_once(judge_path: Path, *, exclude: set[str], steps: int, batch_size: int, seed: int) -> dict:
    """Train the demo judge from scratch on rating examples (TRL SFT, loss on the answer only).

    A judge of its own, not a fine-tune of the demo model: the demo model's assistant turn is
    so strongly tied to persona voices that one answer token a prompt barely moves it, while a
    fresh model of the same shape learns the ratings in a few hundred steps. Its tokenizer is
    trained on judge prompts and holds one token per integer 0-100.
    """
    from steering_assets.demo.judge_sft import train_judge_sft
    from steering_assets.demo.model import build_tiny_model, train_tokenizer

    conversations = rating_examples(steps * batch_size, seed=seed, exclude=exclude)
    tokenizer = train_tokenizer((turn["content"] for c in conversations[:4000] for turn in c), vocab_size=2048)
    tokenizer.add_tokens([t for t in judge_tokens() if t not in tokenizer.get_vocab()])
    model = build_tiny_model(tokenizer, seed=seed)
    return train_judge_sft(model, tokenizer, conversations, judge_path, steps=steps, batch_size=batch_size,
                           learning_rate=JUDGE_LEARNING_RATE, max_length=320, seed=seed)


def judge_agreement(truth: dict, reports: dict[str, dict]) -> dict:
    """Share of scenario items where the judge's pass/fail equals the expected verdict, and the misses."""
    agree, total, misses = 0, 0, []
    for key, expected in truth.items():
        report = reports.get(key)
        if report is None:
            continue
        failed = report["failed_indices"]
        for side in ("positive", "negative"):
            for index, item in enumerate(expected[side]):
                judged_pass = index not in failed[side]
                total += 1
                if judged_pass == item["should_pass"]:
                    agree += 1
                else:
                    misses.append((key, side, index, item["why"]))
    return {"agree": agree, "total": total, "rate": agree / total if total else 0.0, "misses": misses}


def read_truth(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def response_verdicts(store, scenarios_root: Path, traits: list[str]) -> dict:
    """Known verdicts of the base model's completions (stage 2), per trait: which voice wrote them."""
    from steering_assets.vetting.scenarios import Verdict

    return {key: [Verdict("response", side, index, item["should_pass"], item["why"])
                  for side in ("positive", "negative") for index, item in enumerate(truth[side])]
            for key, truth in response_truth(store, scenarios_root, traits).items()}


def response_truth(store, scenarios_root: Path, traits: list[str]) -> dict:
    """Expected verdicts for the base model's completions: which voice wrote them (``voice_score``)."""
    from steering_assets.vetting.pipeline import RESPONSES_FILE

    truth = {}
    for key in traits:
        category, _, trait = key.partition("/")
        path = store.folder("vetting", "scenario_responses", category, trait) / RESPONSES_FILE
        if trait not in TRAIT_VOICES or not path.is_file():
            continue
        responses = json.loads(path.read_text())
        truth[key] = {
            side: [{"should_pass": (score >= 60 if side == "positive" else score <= 40), "why": f"voice score {score:.0f}"}
                   for score in (voice_score(trait, text) for text in responses[side])]
            for side in ("positive", "negative")
        }
    return truth
