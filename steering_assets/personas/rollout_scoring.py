"""The judge's scores of rollouts: assistant-axis's stage 3, in the score files the persona datasets read.

Roles are rated 0-3 for role adherence (assistant-axis's scale: 3 = fully in role), traits 0-100
for trait expression, each with its instruction file's ``eval_prompt``. The judge is asked once a
reply (``max_tokens=1``, top logprobs), its score the probability-weighted mean of the number
tokens: a role's 0-3 mean is rounded to an int, a trait's 0-100 mean too, and a trait reply the
judge refuses to rate is ``"REFUSAL"``. A reply the judge cannot score (too little probability
on numbers, an error) is left out of the file, as the public judge scripts leave unparseable
answers out, and is counted; the judgment cache re-asks exactly those on the next run.

The eval prompt is filled with ``{question}`` and ``{answer}`` when it has them (assistant-axis's
template); otherwise the question and the reply follow it. ``neutral`` trait rows are scored
under ``default_p{i}_q{j}`` (the trait judge's key), baseline roles are not scored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from steering_assets.core.artifacts import write_json_atomic
from steering_assets.formats.instructions import InstructionSet, fill
from steering_assets.formats.rollouts import ROLES, PersonaKind
from steering_assets.judge.judgments import JudgeItem
from steering_assets.personas.loading import read_responses

ROLE_SCALE_TOP = 3


def judge_item(spec: InstructionSet, row: Any, model_name: str) -> JudgeItem:
    """One reply as the judge reads it: the eval prompt's rubric (LLM judges) and its parts (the likelihood judge).

    The concept is the persona as its file states it: for a role the instruction the reply was asked under
    (against the default assistant), for a trait the instruction pair's ``pos`` (against its ``neg``)."""
    answer = row.conversation[-1]["content"]
    if spec.kind is ROLES:
        concept, contrast = row.system_prompt, ""
    else:
        pair = spec.prompts[min(row.prompt_index, len(spec.prompts) - 1)]
        concept, contrast = fill(pair["pos"], model_name=model_name), fill(pair["neg"], model_name=model_name)
    return JudgeItem(prompt=judge_prompt(spec, row.question, answer, model_name), criterion="concept", answer=answer,
                     concept=concept, contrast=contrast, question=row.question)


def judge_prompt(spec: InstructionSet, question: str, answer: str, model_name: str) -> str:
    """The prompt the judge rates one reply with (see the module docstring)."""
    template = spec.eval_prompt or ""
    if "{answer}" in template:
        return fill(template, question=question, answer=answer, model_name=model_name)
    scale = "a whole number from 0 to 3" if spec.kind is ROLES else "a whole number from 0 to 100, or REFUSAL"
    return (f"{fill(template, model_name=model_name)}\n\nQuestion:\n{question}\n\nReply:\n{answer}\n\n"
            f"Answer with {scale} and nothing else.")


@dataclass
class ScoringOutcome:
    path: Path
    scored: int
    refusals: int
    unscored: dict[str, str] = field(default_factory=dict)  # score key -> why
    distribution: dict[str, int] = field(default_factory=dict)  # score -> replies
    not_scored: str | None = None  # why nothing was scored (a baseline role), else None


def score_rollouts(responses: Path, spec: InstructionSet, judge: Any, out: Path, model_name: str,
                   log: Callable[[str], None] | None = None) -> ScoringOutcome:
    """Rate every non-baseline reply in ``responses`` and write ``{score key: score}`` to ``out`` atomically."""
    say = log or (lambda message: None)
    kind: PersonaKind = spec.kind
    rows = [r for r in read_responses(responses, kind) if not (kind is ROLES and r.label in kind.baseline_labels)]
    prompts = [judge_item(spec, r, model_name) for r in rows]
    say(f"{responses.name}: the judge rates {len(prompts)} replies ({'0-3 role adherence' if kind is ROLES else '0-100 trait expression'})")
    judgments: Sequence[Any] = judge.score(prompts, scale_top=ROLE_SCALE_TOP) if kind is ROLES else judge.score(prompts)
    scores: dict[str, int | str] = {}
    outcome = ScoringOutcome(out, 0, 0)
    for row, judgment in zip(rows, judgments):
        key = row.score_key
        if judgment.refusal and kind.allows_refusal:
            scores[key] = "REFUSAL"
            outcome.refusals += 1
        elif judgment.ok:
            value = round(judgment.score * ROLE_SCALE_TOP / 100) if kind is ROLES else round(judgment.score)
            scores[key] = value
        else:
            outcome.unscored[key] = judgment.error or f"no score (probability on numbers {judgment.weight:.2f})"
            continue
        outcome.distribution[str(scores[key])] = outcome.distribution.get(str(scores[key]), 0) + 1
    outcome.scored = len(scores)
    if outcome.unscored:
        say(f"{responses.name}: {len(outcome.unscored)} replies left unscored, e.g. {next(iter(outcome.unscored.items()))}")
    write_json_atomic(scores, out)
    return outcome

