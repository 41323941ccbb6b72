"""The demo's known verdicts for steered generations, and the steering judge that learns them.

The demo corpus is made of template sentences, so what a judge should say of a demo reply
can be computed (``known_ratings``), on the 0-2 scale of ``vetting/steering_ratings.py``:

- concept: the share of the reply's words that only the persona's voice uses (its role voice,
  or a trait's positive pole): 2 from a fifth, 1 from one in twenty, else 0. Lexical on
  purpose: the persona's words on repeat still show the concept (fluency is rated apart);
- instruction: 2 when the reply names the question's topic and no other, 1 when other topics
  come in too, else 0;
- fluency: the share of the reply made of whole corpus sentences (any voice, any topic; a
  sentence cut off by the token limit at the end is not held against it): 2 from 70%,
  1 from 30%, else 0; a sentence repeated three times or more caps it at 1.

The demo's steering judge (``build_steering_judge``) is the demo model fine-tuned on rating
prompts about its own steered replies (``own_replies``) and synthetic ones
(``steering_rating_examples``), each labelled with its known ratings, plus an auxiliary
"whose voice is this?" question (``VOICE_QUESTION``). ``make demo`` checks its ratings of the
real steered generations against ``known_ratings`` (``recorded_agreement``).
"""

from __future__ import annotations

import random
import re
import shutil
import time
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

from steering_assets.demo.corpus import GENERIC_SENTENCES, QUESTIONS, ROLE_VOICES, TOPICS, TRAIT_VOICES, Voice
from steering_assets.vetting.steering_ratings import INSTRUCTIONS, rating_prompts


def persona_voice(name: str) -> Voice | None:
    """The voice a demo persona writes in: its role voice, or its trait's positive pole (None: not a demo persona)."""
    if name in ROLE_VOICES:
        return ROLE_VOICES[name]
    if name in TRAIT_VOICES:
        return TRAIT_VOICES[name]["pos"]
    return None


def _all_voices() -> list[Voice]:
    return [*ROLE_VOICES.values(), *(voice for poles in TRAIT_VOICES.values() for voice in poles.values())]


def _templates(voice: Voice) -> tuple[str, ...]:
    return (*voice.openers, *voice.sentences, *voice.closers)


def _pattern(template: str) -> re.Pattern:
    # A topic is lower-case words; case-insensitive because replies capitalise their first letter.
    parts = [re.escape(part) for part in template.split("{topic}")]
    return re.compile(r"[A-Za-z][A-Za-z ]{0,40}?".join(parts), re.IGNORECASE)


@lru_cache(maxsize=1)
def _every_pattern() -> tuple[re.Pattern, ...]:
    templates = dict.fromkeys(t for voice in _all_voices() for t in _templates(voice))
    return tuple(_pattern(t) for t in (*templates, *GENERIC_SENTENCES))


def _covered(text: str) -> list[bool]:
    """Which characters of ``text`` lie in a whole corpus sentence (any voice's template or a generic one)."""
    covered = [False] * len(text)
    for pattern in _every_pattern():
        for match in pattern.finditer(text):
            for i in range(match.start(), match.end()):
                covered[i] = True
    return covered


def _share(text: str, covered: list[bool]) -> float:
    counted = [c for c, ch in zip(covered, text) if not ch.isspace()]
    return sum(counted) / len(counted) if counted else 0.0


def _without_cut_tail(text: str) -> str:
    """The reply up to its last full sentence: a generation stopped by the token limit ends mid-sentence."""
    end = max(text.rfind("."), text.rfind("!"), text.rfind("?"))
    return text[: end + 1] if end >= 0 and len(text) - end - 1 < 80 else text


_WORD = re.compile(r"[a-z]+")


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


@lru_cache(maxsize=None)
def voice_words(voice: Voice) -> frozenset[str]:
    """Words only this voice uses: in its templates, in no other voice's, no generic sentence and no topic."""
    own = {w for t in _templates(voice) for w in _words(t.replace("{topic}", ""))}
    shared = {w for other in _all_voices() if other is not voice for t in _templates(other) for w in _words(t)}
    shared |= {w for s in GENERIC_SENTENCES for w in _words(s)} | {w for topic in TOPICS for w in _words(topic)}
    return frozenset(own - shared)


def concept_share(name: str, reply: str) -> float:
    """Share of the reply's words that only the persona's voice uses (0 for a non-demo persona or no words)."""
    voice = persona_voice(name)
    words = _words(reply)
    if voice is None or not words:
        return 0.0
    own = voice_words(voice)
    return sum(w in own for w in words) / len(words)


def concept_rating(name: str, reply: str) -> int:
    """2 when at least a fifth of the words are the persona's own, 1 from one in twenty, else 0.

    Lexical on purpose: the concept is whether the persona shows, however broken the text
    (fluency is rated apart); a fluent reply in the voice holds 25-45% such words.
    """
    share = concept_share(name, reply)
    return 2 if share >= 0.2 else 1 if share >= 0.05 else 0


def question_topic(question: str) -> str | None:
    lowered = question.lower()
    found = [topic for topic in TOPICS if topic in lowered]
    return max(found, key=len) if found else None


def instruction_rating(question: str, reply: str) -> int:
    """2 when the reply names the question's topic and no other, 1 when it names other topics too, else 0."""
    wanted = question_topic(question)
    lowered = reply.lower()
    if wanted is None or wanted not in lowered:
        return 0
    others = [t for t in TOPICS if t != wanted and t not in wanted and t in lowered]
    return 1 if others else 2


def fluency_rating(reply: str) -> int:
    text = _without_cut_tail(reply.strip())
    if not text:
        return 0
    covered = _covered(text)
    share = _share(text, covered)
    rating = 2 if share >= 0.7 else 1 if share >= 0.3 else 0
    sentences = [s.strip().lower() for s in re.split(r"(?<=[.!?])\s+", text) if s.strip()]
    if sentences and max(sentences.count(s) for s in set(sentences)) >= 3:
        rating = min(rating, 1)
    return rating


def known_ratings(name: str, question: str, reply: str) -> dict[str, int]:
    """The demo's verdict for one generation: ``{"concept", "instruction", "fluency"}``, each 0, 1 or 2."""
    return {"concept": concept_rating(name, reply), "instruction": instruction_rating(question, reply),
            "fluency": fluency_rating(reply)}


# --- rating examples ---------------------------------------------------------------------------

def _sentence(rng: random.Random, voice: Voice | None, topic: str) -> str:
    if voice is None:
        return rng.choice(GENERIC_SENTENCES).format(topic=topic)
    return rng.choice(rng.choice((voice.sentences, voice.sentences, voice.openers, voice.closers))).format(topic=topic)


def _degenerate(rng: random.Random, text: str, voice: Voice | None) -> str:
    """Text a model writes when steered too hard: one word or a short phrase on repeat (often the voice's own),
    stuttering, punctuation runs, word fragments, or shuffled words."""
    words = text.split() or ["the"]
    pool = sorted(voice_words(voice)) if voice is not None and rng.random() < 0.6 else [w.strip(".,!?") for w in words]
    style = rng.random()
    if style < 0.3:
        return " ".join([rng.choice(pool)] * rng.randint(8, 30))
    if style < 0.5:
        phrase = " ".join(rng.choice(pool) for _ in range(rng.randint(2, 3)))
        return " ".join([phrase] * rng.randint(4, 12))
    if style < 0.65:
        return " ".join(w for w in words for _ in range(rng.randint(1, 3)))
    if style < 0.75:
        return " ".join(words[: rng.randint(1, 4)]) + rng.choice((",", ".", "!", " the")) * rng.randint(10, 40)
    if style < 0.85:
        piece = rng.choice(pool)[: rng.randint(2, 6)]
        return rng.choice(pool) + piece * rng.randint(6, 20)
    rng.shuffle(words)
    return " ".join(words)


# Replies of a few words: the clearest examples of each rating, which a tiny judge learns first.
SHORT_REPLY_SHARE = 0.3
# How often a reply is mostly in the persona voice, another voice, or none.
VOICE_WEIGHTS = (0.45, 0.35, 0.2)


def _short_reply(rng: random.Random, persona: Voice, others: list[Voice], topic: str) -> str:
    """One short sentence of some voice, or a few loose words (the persona's own, another voice's, a topic)."""
    voice = persona if rng.random() < 0.5 else rng.choice(others)
    if rng.random() < 0.4:
        return rng.choice((*voice.openers, *voice.closers))
    pool = [*sorted(voice_words(voice))] * 2 + [topic if rng.random() < 0.6 else rng.choice(TOPICS), "the", "and", "of"]
    return " ".join(rng.choice(pool) for _ in range(rng.randint(1, 5)))


def _random_reply(rng: random.Random, persona: Voice, topic: str) -> str:
    """A reply like the demo model's under a steering sweep: in the persona's voice, another voice or none; on the
    question's topic, another or none; fluent, breaking down part-way, or degenerate; cut off by the token limit."""
    others = [v for v in _all_voices() if v is not persona]
    if rng.random() < SHORT_REPLY_SHARE:
        return _short_reply(rng, persona, others, topic)
    main = rng.choices(("persona", "other", "generic"), weights=VOICE_WEIGHTS)[0]
    topic_mode = rng.choices(("asked", "other", "mixed"), weights=(0.7, 0.15, 0.15))[0]
    pieces = []
    for index in range(rng.randint(1, 4)):
        kind = main if rng.random() < 0.75 else rng.choice(("persona", "other", "generic"))
        voice = persona if kind == "persona" else rng.choice(others) if kind == "other" else None
        here = topic if topic_mode == "asked" or (topic_mode == "mixed" and index == 0) else rng.choice(TOPICS)
        pieces.append(_sentence(rng, voice, here))
    text = " ".join(pieces)
    damage = rng.random()
    steered_voice = persona if rng.random() < 0.7 else rng.choice(others)
    if damage < 0.25:
        text = _degenerate(rng, text, steered_voice)
    elif damage < 0.4:
        keep = rng.randint(1, max(1, len(text) // 2))
        text = text[:keep].rstrip() + " " + _degenerate(rng, text[keep:], steered_voice)
    elif damage < 0.47:
        text = " ".join([pieces[0]] * rng.randint(3, 5))
    if len(text) > 220 or (rng.random() < 0.4 and len(text) > 60):
        text = text[: rng.randint(40, min(len(text), 220))].rstrip()
    return text


def persona_descriptions() -> dict[str, tuple[str, ...]]:
    """What the concept prompt may say a demo persona is: ``"{name}: {one of its instructions}"``."""
    return {name: tuple(f"{name}: {prompt}" for prompt in persona_voice(name).system_prompts)
            for name in (*ROLE_VOICES, *TRAIT_VOICES)}


def steering_rating_examples(count: int, seed: int = 0) -> list[list[dict[str, str]]]:
    """Judge conversations rating demo-like replies 0-2, a third each for concept, instruction and fluency."""
    rng = random.Random(f"{seed}-steering-ratings")
    descriptions = persona_descriptions()
    names = list(descriptions)
    conversations = []
    for index in range(count):
        name = rng.choice(names)
        question = rng.choice(QUESTIONS)
        reply = _random_reply(rng, persona_voice(name), question_topic(question))
        criterion = ("concept", "instruction", "fluency")[index % 3]
        prompt = rating_prompts(rng.choice(descriptions[name]), question, reply)[criterion]
        answer = known_ratings(name, question, reply)[criterion]
        conversations.append([{"role": "user", "content": prompt}, {"role": "assistant", "content": str(answer)}])
    return conversations


# --- teaching the demo judge the steering ratings ------------------------------------------------

# Measured on 2 cores (notes/STEERING_JUDGE_NOTES.md), from the demo model on 3000 own replies
# (x4 conversations) and 9000 synthetic examples, against the known ratings of 960 real steered
# generations (concept / instruction / fluency): 700 steps x 32: 0.67 / 0.81 / 0.69; 700 x 16:
# 0.62 / 0.73 / 0.66 in half the time; 500 x 16: 0.35 / 0.37 / 0.42 (the ratings are learned
# late, after a loss plateau); 450 x 32: 0.64 / 0.68 / 0.63. Fewer synthetic examples did worse.
STEERING_JUDGE_STEPS = 700
STEERING_JUDGE_BATCH = 16
STEERING_JUDGE_LEARNING_RATE = 2e-3
STEERING_JUDGE_OWN_REPLIES = 3000
STEERING_JUDGE_SYNTHETIC = 9000


def train_steering_judge(judge_path: Path, base_model: Path, conversations: list, *, steps: int = STEERING_JUDGE_STEPS,
                         batch_size: int = STEERING_JUDGE_BATCH, seed: int = 0, learning_rate: float = STEERING_JUDGE_LEARNING_RATE) -> dict:
    """Train the demo's steering judge: the demo model fine-tuned to answer the 0-2 rating prompts
    (TRL SFT, loss on the answer only), saved to ``judge_path`` (swapped in whole).

    Why the demo model and not a fresh one: a judge must already read the demo's language.
    Measured on 2 CPU cores, a fresh model of this size (or the vetting judge, trained further)
    stays near the label priors for the instruction and fluency ratings after a thousand steps,
    while the demo model learns them in a few hundred. Each rating instruction becomes one token,
    as in the vetting judge, so the tiny model's attention is not spread over boilerplate.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from steering_assets.demo.judge_sft import train_judge_sft

    tokenizer = AutoTokenizer.from_pretrained(base_model)
    model = AutoModelForCausalLM.from_pretrained(base_model)
    tokenizer.add_tokens([t for t in (*INSTRUCTIONS.values(), VOICE_QUESTION) if t not in tokenizer.get_vocab()])
    model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    return train_judge_sft(model, tokenizer, conversations, judge_path, steps=steps, batch_size=batch_size,
                           learning_rate=learning_rate, max_length=256, seed=seed)


def rating_agreement(judge: Any, items: Sequence[tuple[str, str, str, str]]) -> dict[str, dict[str, float]]:
    """How ``judge`` (``vetting.judge.Judge``) rates ``(persona, description, question, reply)`` items
    against ``known_ratings``: asks it the three rating prompts of each item, then ``recorded_agreement``."""
    from steering_assets.vetting.steering_ratings import CRITERIA, RATING_TOP

    prompts = [prompt for _, description, question, reply in items
               for prompt in rating_prompts(description, question, reply).values()]
    judgments = iter(judge.score(prompts, scale_top=RATING_TOP))
    rated = []
    for name, _, question, reply in items:
        ratings = {c: (j.score * RATING_TOP / 100.0 if j.ok else None) for c, j in zip(CRITERIA, judgments)}
        rated.append((name, question, reply, ratings))
    return recorded_agreement(rated)


def recorded_agreement(rated: Sequence[tuple[str, str, str, dict[str, float | None] | None]]) -> dict[str, dict[str, float]]:
    """Judge ratings already made, ``(persona, question, reply, {criterion: rating in [0, 2] or None})``
    (None for an unrated generation), against ``known_ratings``.

    Per criterion: ``agree`` (share of rated items whose rating, rounded to the nearest integer,
    equals the known one), ``mae`` (mean absolute difference, in rating points), ``judge`` and
    ``known`` (mean ratings over the rated items), ``rated`` and ``items``.
    """
    pairs: dict[str, list[tuple[int, float]]] = {c: [] for c in ("concept", "instruction", "fluency")}
    for name, question, reply, ratings in rated:
        truth = known_ratings(name, question, reply)
        for criterion, known in truth.items():
            value = (ratings or {}).get(criterion)
            if value is not None:
                pairs[criterion].append((known, value))
    out: dict[str, dict[str, float]] = {}
    for criterion, values in pairs.items():
        n = len(values)
        out[criterion] = {
            "agree": sum(round(v) == k for k, v in values) / n if n else float("nan"),
            "mae": sum(abs(v - k) for k, v in values) / n if n else float("nan"),
            "judge": sum(v for _, v in values) / n if n else float("nan"),
            "known": sum(k for k, _ in values) / n if n else float("nan"),
            "rated": n, "items": len(rated),
        }
    return out



def known_method_scores(name: str, records: Sequence[dict[str, Any]], chosen: dict[str, float | None]) -> dict[str, float]:
    """Per method, the mean harmonic score of the known ratings over ``records`` (a persona's
    ``generations.jsonl`` rows) on the report half, at the factor ``chosen`` for each vector method
    (None: a method without factors): the comparison the judge's table makes, with the known
    ratings in the judge's place."""
    from steering_assets.vetting.steering_ratings import harmonic_mean

    scores: dict[str, list[float]] = {}
    for row in records:
        method = row["method"]
        if row["half"] != "report" or method not in chosen or (chosen[method] is not None and row["factor"] != chosen[method]):
            continue
        scores.setdefault(method, []).append(harmonic_mean(list(known_ratings(name, row["instruction"], row["reply"]).values())))
    return {method: sum(values) / len(values) for method, values in scores.items()}

# --- the voice question and the demo model's own replies ---------------------------------------

# The auxiliary question the steering judge also learns: which persona's voice a reply is in.
# Without it a tiny judge learns "the reply has some strong voice", not "this persona's voice"
# (concept accuracy 0.62-0.75 against 0.87 with it; notes/STEERING_JUDGE_NOTES.md).
VOICE_QUESTION = "Whose voice is the reply written in? Answer with a persona name, or none."


def dominant_voice(reply: str) -> str:
    """The demo persona whose own words make up most of ``reply`` (at least 5% of its words), else ``"none"``."""
    best, share = "none", 0.0
    for name in persona_descriptions():
        value = concept_share(name, reply)
        if value > share:
            best, share = name, value
    return best if share >= 0.05 else "none"


def voice_question(reply: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"{VOICE_QUESTION}\n\nReply: {reply}"},
            {"role": "assistant", "content": dominant_voice(reply)}]


def labelled_conversations(items: Sequence[tuple[str, str, str, str]],
                           truths: Sequence[dict[str, int]] | None = None) -> list[list[dict[str, str]]]:
    """Judge conversations for ``(persona, description, question, reply)`` items: the three ratings and the voice question.

    ``truths``: the items' ``known_ratings`` when the caller has them already (else computed here)."""
    if truths is None:
        truths = [known_ratings(name, question, reply) for name, _, question, reply in items]
    conversations = []
    for (_, description, question, reply), truth in zip(items, truths, strict=True):
        for criterion, prompt in rating_prompts(description, question, reply).items():
            conversations.append([{"role": "user", "content": prompt}, {"role": "assistant", "content": str(truth[criterion])}])
        conversations.append(voice_question(reply))
    return conversations


def own_replies(model: Any, tokenizer: Any, *, questions: Sequence[str], count: int, layer: int | None = None,
                factors: Sequence[float] = (0.0, 0.25, 0.5, 1.0, 2.0), max_new_tokens: int = 32, batch_size: int = 64,
                seed: int = 0) -> list[tuple[str, str, str, str]]:
    """``count`` greedy replies of the demo model as a steering sweep writes them: ``(persona, description, question, reply)``.

    Each reply is prompted with the persona's instruction (a third of them) or not, and steered
    along the persona's difference-of-means direction (the mean block output over its voice's
    fluent replies minus that over every voice's) at a factor of the typical residual norm. No
    trained vector is needed, so this can run as soon as the demo model is trained.
    """
    import numpy as np
    import torch

    from steering_assets.steering.judged_eval import chat_prompt, generate_batched, scaled_direction, typical_residual_norm
    from steering_assets.steering.residual import block_outputs

    rng = random.Random(f"{seed}-own-replies")
    names = list(persona_descriptions())
    layer = model.config.num_hidden_layers // 2 if layer is None else layer
    fluent = {name: [[{"role": "user", "content": q}, {"role": "assistant", "content": " ".join(
        _sentence(rng, persona_voice(name), question_topic(q) or "it") for _ in range(3))}]
        for q in rng.sample(list(questions), 8)] for name in names}
    means = {}
    with torch.no_grad():
        for name, conversations in fluent.items():
            texts = [tokenizer.apply_chat_template(c, tokenize=False) for c in conversations]
            batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
            hidden = block_outputs(model, [layer], **batch)[layer]
            means[name] = (hidden * batch["attention_mask"][..., None]).sum((0, 1)) / batch["attention_mask"].sum()
    overall = torch.stack(list(means.values())).mean(0)
    residual = typical_residual_norm(model, tokenizer, [c for cs in fluent.values() for c in cs[:2]], layer)
    rows, prompts, items = [], [], []
    vectors = [np.zeros(model.config.hidden_size, dtype=np.float32)]
    for index in range(count):
        name, question = rng.choice(names), rng.choice(list(questions))
        factor = rng.choice(list(factors))
        description = rng.choice(persona_descriptions()[name])
        system_prompt = description.split(": ", 1)[1] if rng.random() < 1 / 3 else None
        if factor:
            vectors.append(scaled_direction((means[name] - overall).numpy(), factor, residual))
        rows.append(len(vectors) - 1 if factor else 0)
        prompts.append(chat_prompt(tokenizer, question, system_prompt))
        items.append((name, description, question))
    replies = generate_batched(model, tokenizer, prompts, rows, layer, torch.from_numpy(np.stack(vectors)),
                               max_new_tokens, batch_size)
    return [(*item, reply) for item, reply in zip(items, replies)]


# The check after training: fresh own replies (another seed) rated against their known ratings.
STEERING_JUDGE_VALIDATION_REPLIES = 150
MIN_STEERING_AGREEMENT = 0.55  # on every criterion; a judge stuck before its loss drops scores 0.3-0.4


def build_steering_judge(judge_path: Path, model_path: Path, *, seed: int = 0, own: int = STEERING_JUDGE_OWN_REPLIES,
                         synthetic: int = STEERING_JUDGE_SYNTHETIC, steps: int = STEERING_JUDGE_STEPS,
                         batch_size: int = STEERING_JUDGE_BATCH, learning_rate: float = STEERING_JUDGE_LEARNING_RATE,
                         validation: int = STEERING_JUDGE_VALIDATION_REPLIES, attempts: int = 2,
                         min_agreement: float = MIN_STEERING_AGREEMENT) -> dict:
    """The demo's steering judge, end to end: ``own`` steered replies of the demo model at ``model_path``
    (``own_replies``), each asked the three ratings and the voice question with its known answers,
    mixed with ``synthetic`` rating examples, and ``train_steering_judge`` on them; saved to ``judge_path``.

    Then checked, as the vetting judge is: ``validation`` fresh own replies (another seed) are rated
    and compared with their known ratings (``rating_agreement``). A judge agreeing on less than
    ``min_agreement`` of any criterion (the ratings are learned late, after a loss plateau)
    is trained again with the next seed and half as many steps more; after ``attempts`` it raises
    ``RuntimeError`` saying what it measured.

    Returns the training summary with ``own_replies_seconds``, the known ratings' spread over the own
    replies (``own_ratings``: per criterion, how many replies are rated 0, 1 and 2), ``validation``
    (the agreement per criterion) and ``attempt``.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from steering_assets.vetting.local import LocalJudge

    started = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForCausalLM.from_pretrained(model_path).eval()
    torch.manual_seed(seed)
    items = own_replies(model, tokenizer, questions=QUESTIONS, count=own, seed=seed)
    held_out = own_replies(model, tokenizer, questions=QUESTIONS, count=validation, seed=seed + 1000)
    del model
    truths = [known_ratings(name, question, reply) for name, _, question, reply in items]
    spread = {c: [0, 0, 0] for c in ("concept", "instruction", "fluency")}
    for truth in truths:
        for criterion, rating in truth.items():
            spread[criterion][rating] += 1
    conversations = labelled_conversations(items, truths) + steering_rating_examples(synthetic, seed=seed)
    random.Random(f"{seed}-steering-judge").shuffle(conversations)
    own_seconds = round(time.perf_counter() - started, 1)
    for attempt in range(attempts):
        training = train_steering_judge(judge_path, model_path, conversations, steps=steps + attempt * steps // 2,
                                        batch_size=batch_size, seed=seed + attempt, learning_rate=learning_rate)
        judge = LocalJudge(AutoModelForCausalLM.from_pretrained(judge_path).eval(), AutoTokenizer.from_pretrained(judge_path),
                           "validation")
        agreement = rating_agreement(judge, held_out)
        # A criterion the judge rated nothing of agrees on nothing.
        if all((v["agree"] if v["rated"] else 0.0) >= min_agreement for v in agreement.values()):
            break
    else:
        shutil.rmtree(judge_path, ignore_errors=True)
        measured = ", ".join(f"{c} {v['agree']:.0%}" if v["rated"] else f"{c} none rated" for c, v in agreement.items())
        raise RuntimeError(
            f"the demo steering judge agrees with the known ratings of {validation} fresh replies on only {measured} "
            f"after {attempts} attempt(s) (needs {min_agreement:.0%} on each); rebuild the demo "
            "(steering-assets demo --rebuild) or raise STEERING_JUDGE_STEPS in steering_assets/demo/steering_judge.py")
    return {**training, "own_replies": own, "own_replies_seconds": own_seconds, "own_ratings": spread,
            "synthetic_examples": synthetic, "attempt": attempt + 1,
            "validation": {c: round(v["agree"], 3) for c, v in agreement.items()}}
