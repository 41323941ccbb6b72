"""Judge-scored steering evaluation: trained vector vs activation vector vs prompting vs nothing.

The protocol follows AxBench (Wu et al., 2025): held-out instructions are answered under each
method; an LLM judge rates every generation 0-2 for the concept (the persona or trait), for
following the instruction and for fluency (``vetting/steering_ratings.py``); a generation
scores the harmonic mean of the three. The steering strength of each vector method is chosen
on one half of the instructions (the selection half) and every method is reported on the
other half (the report half), so the reported number never saw the choice.

Methods:
- ``trained``: the steering vector learned by ``steering_vector``;
- ``activation``: the difference-of-means vector of ``persona_activation_vector``;
- ``random``: a random direction (seeded by the persona) at the same layer and the same strengths: the
  baseline any steering effect must beat, since on a small model a random push of half the residual norm
  already changes what it writes;
- ``prompted``: no steering, the persona's own system prompt (its most frequent instruction);
- ``unsteered``: no steering, no system prompt.

A vector method's reported concept gain counts only above ``random``'s (``above_random`` in the table).
Degenerate text counts against fluency whatever the judge says: a reply that loops (under half of its word
trigrams distinct), is empty, or prints the chat template's injected system prompt gets fluency 0.

Strength. A vector method adds ``factor x r x v / |v|`` to the residual stream at the vector's
layer, where ``r`` is the typical (median) residual-stream norm of the model's reply tokens at
that layer. A factor of 1 adds a vector as long as the residual stream itself, whatever the
model, layer or vector, so the same factors compare both vectors and every persona. Each
vector's own norm is reported as a fraction of ``r`` too (``norm / r``): the factor at which
it is applied as trained.

Decoding is greedy, so the generations are deterministic. Every generation of one persona
(all methods, all factors, both halves) is one batched ``generate`` per ``batch_size`` rows,
each row with its own steering vector (``SteeringVectors`` with one row per setting).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import polars as pl

from steering_assets.core.artifacts import ArtifactIntegrityError, ArtifactResult, ArtifactStore, fingerprint
from steering_assets.core.errors import InputError
from steering_assets.formats.rollouts import PersonaRef
from steering_assets.steering.ratings import (
    CRITERIA,
    RATING_TOP,
    STEERING_RATING_VERSION,
    Ratings,
    mean_or_nan,
    rating_items,
    ratings_from_judgments,
)

JUDGED_EVAL_CODE_VERSION = "2"
JUDGED_EVAL_FILE = "judged_evaluation.json"
JUDGED_PLOT_FILE = "scores_by_factor.png"
GENERATIONS_FILE = "generations.jsonl"  # every generation with its half, setting and ratings
TRAINED, ACTIVATION, RANDOM, PROMPTED, UNSTEERED = "trained", "activation", "random", "prompted", "unsteered"
VECTOR_METHODS = (TRAINED, ACTIVATION, RANDOM)
METHODS = (TRAINED, ACTIVATION, RANDOM, PROMPTED, UNSTEERED)
# Under this share of distinct word trigrams a reply is a loop ("Aye, aye, aye, ...").
MIN_DISTINCT_TRIGRAMS = 0.5


class NotEnoughInstructionsError(InputError, ValueError):
    """Too few held-out instructions to choose the steering factor on one half and report on the other."""


@dataclass(frozen=True)
class JudgedEvalConfig:
    """Settings of the judge-scored evaluation (see the module docstring for the protocol).

    ``factors``: steering strengths in units of the layer's typical residual norm. The defaults span where
    a concept rises and where fluency collapses: on SmolLM2-135M (block 15) a difference-of-means vector reads
    as the persona from about 0.25 and breaks text at 0.5-1 (``notes/REAL_MODELS_NOTES.md``).
    ``instructions``: held-out instructions used (split in two halves); fewer are used when
    fewer exist, but at least ``2 * min_per_half``.
    """

    factors: tuple[float, ...] = (0.125, 0.25, 0.5, 1.0)
    instructions: int = 16
    min_per_half: int = 2
    max_new_tokens: int = 48
    batch_size: int = 32
    norm_rows: int = 32
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.factors or any(not math.isfinite(f) or f <= 0 for f in self.factors):
            raise ValueError(f"factors must be positive numbers, got {list(self.factors)}")
        if self.min_per_half < 1:
            raise ValueError(f"min_per_half must be at least 1, got {self.min_per_half}")


# ---- instructions and prompts -------------------------------------------------------------

def held_out_instructions(dataset: pl.DataFrame, train: pl.DataFrame, validation: pl.DataFrame) -> list[str]:
    """Questions of the persona's dataset that neither the training nor the validation split asks, in dataset order."""
    used = set(train["question"].to_list()) | set(validation["question"].to_list())
    return [q for q in dict.fromkeys(dataset["question"].to_list()) if q and q not in used]


def split_instructions(instructions: Sequence[str], config: JudgedEvalConfig, where: str) -> tuple[list[str], list[str]]:
    """A seeded sample of ``config.instructions`` instructions cut into (selection half, report half).

    Raises NotEnoughInstructionsError naming the count when fewer than ``2 * min_per_half`` exist.
    """
    needed = 2 * config.min_per_half
    if len(instructions) < needed:
        raise NotEnoughInstructionsError(
            f"{where}: {len(instructions)} held-out instruction(s) (questions in neither the training nor the validation "
            f"split), but the judged evaluation needs at least {needed}: {config.min_per_half} to choose the steering "
            "factor on and as many to report on. Lower the training split's token budget (train_tokens) so fewer "
            "questions go into training, or lower min_per_half"
        )
    rng = np.random.default_rng(config.seed)
    count = min(config.instructions, len(instructions))
    count -= count % 2
    chosen = [instructions[i] for i in sorted(rng.permutation(len(instructions))[:count])]
    order = rng.permutation(count)
    half = count // 2
    return [chosen[i] for i in sorted(order[:half])], [chosen[i] for i in sorted(order[half:])]


def persona_system_prompt(dataset: pl.DataFrame, keep_labels: Sequence[str]) -> tuple[str | None, str]:
    """The persona's most frequent non-empty instruction among its kept labels, and where it came from.

    Returns ``(None, why)`` when the dataset holds none (the prompted method is then n/a).
    """
    rows = dataset.filter(pl.col("label").is_in(list(keep_labels)))
    prompts = [p for p in rows["system_prompt"].to_list() if p and p.strip()]
    if not prompts:
        return None, (f"no row labelled {list(keep_labels)} carries a system prompt (the rollouts were written without "
                      "a persona instruction), so there is no prompt to compare against")
    prompt, count = Counter(prompts).most_common(1)[0]
    return prompt, f"most frequent of {len(set(prompts))} instruction(s), on {count} of {len(prompts)} rows"


def chat_prompt(tokenizer: Any, instruction: str, system_prompt: str | None) -> str:
    """The rendered generation prompt: a system turn when given, or for a template without a system role
    (Gemma-2) the instruction before the question in the user turn, as the rollout writers do."""
    if system_prompt is None:
        return tokenizer.apply_chat_template([{"role": "user", "content": instruction}], add_generation_prompt=True, tokenize=False)
    try:
        return tokenizer.apply_chat_template(
            [{"role": "system", "content": system_prompt}, {"role": "user", "content": instruction}],
            add_generation_prompt=True, tokenize=False,
        )
    except Exception:  # jinja raise_exception: "System role not supported"
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": f"{system_prompt}\n\n{instruction}"}], add_generation_prompt=True, tokenize=False)


# ---- residual norm and generation ---------------------------------------------------------

def typical_residual_norm(model: Any, tokenizer: Any, conversations: Sequence[list[dict[str, str]]], layer: int,
                          batch_size: int = 16, max_length: int = 512, model_name: str = "the target model") -> float:
    """Median L2 norm of the residual stream at the output of block ``layer`` over the replies' tokens.

    The median, not the mean: a few positions (the first token, attention sinks) carry norms
    tens of times larger than the rest. Raises ValueError when there is no reply token.
    """
    import torch

    from steering_assets.models.residual import reply_block_outputs

    norms = []
    with torch.no_grad():
        for captured, assistant in reply_block_outputs(model, tokenizer, conversations, [layer], batch_size=batch_size,
                                                       max_length=max_length, model_name=model_name):
            norms.append(captured[layer].float().norm(dim=-1)[assistant].cpu())
    values = torch.cat(norms) if norms else torch.zeros(0)
    if not len(values):
        raise ValueError(f"no reply tokens to measure the residual norm at layer {layer} on")
    return float(values.median())


@dataclass(frozen=True)
class Setting:
    """One way of answering: a method at a factor (None for the unsteered and prompted methods)."""

    method: str
    factor: float | None = None

    @property
    def label(self) -> str:
        return self.method if self.factor is None else f"{self.method}@{self.factor:g}"


def generate_batched(model: Any, tokenizer: Any, prompts: Sequence[str], rows: Sequence[int], layer: int, vectors: Any,
                     max_new_tokens: int, batch_size: int, model_name: str = "the target model",
                     progress: Callable[[int, int], None] | None = None) -> list[str]:
    """Greedy replies to rendered ``prompts``; prompt i is steered by ``vectors[rows[i]]`` (``[K, d]``, already scaled).

    All prompts go through the same batches whatever their steering row, so one persona's whole
    sweep costs ``ceil(len(prompts) / batch_size)`` generate calls. Left padding (EOS when there
    is no pad token) keeps every row's next token after its own last prompt token.
    """
    import torch

    from steering_assets.models.hooks import attach_steering, input_device
    from steering_assets.models.loading import padded_batches

    device = input_device(model)
    replies: list[str] = []
    with attach_steering(model, layer, int(vectors.shape[0]), vectors.float()) as handle, torch.no_grad():
        with padded_batches(tokenizer, "left", model_name) as pad_id:
            for start in range(0, len(prompts), batch_size):
                chunk = list(prompts[start:start + batch_size])
                batch = tokenizer(chunk, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
                handle.steering.set_persona_index(torch.tensor(list(rows[start:start + batch_size]), dtype=torch.long))
                generated = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=pad_id,
                                           temperature=None, top_p=None, top_k=None)
                replies += [r.strip() for r in tokenizer.batch_decode(generated[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)]
                if progress is not None:
                    progress(len(replies), len(prompts))
    return replies




def scaled_direction(vector: np.ndarray, factor: float, residual_norm: float) -> np.ndarray:
    """``factor x residual_norm x vector / |vector|`` (a zero vector stays zero)."""
    norm = float(np.linalg.norm(vector))
    if norm == 0.0:
        return np.zeros_like(vector, dtype=np.float32)
    return (vector / norm * factor * residual_norm).astype(np.float32)


def random_direction(hidden: int, seed: int, persona: str) -> np.ndarray:
    """A unit-norm Gaussian direction in the residual stream, the same for a persona and seed on every run."""
    rng = np.random.default_rng([seed, int(fingerprint(persona)[:8], 16)])
    vector = rng.standard_normal(hidden)
    return (vector / np.linalg.norm(vector)).astype(np.float32)


def degenerate(reply: str, leaks: Sequence[str] = ()) -> str | None:
    """Why ``reply`` is degenerate text (empty, a loop, a leaked system prompt), or None.

    ``leaks``: texts a reply must not print, e.g. the chat template's injected default system prompt;
    a leak is its first 40 characters appearing anywhere in the reply, case ignored."""
    from steering_assets.judge.likelihood import distinct_trigram_share

    if not reply.strip():
        return "empty reply"
    share = distinct_trigram_share(reply)
    if share < MIN_DISTINCT_TRIGRAMS:
        return f"repetition: {share:.0%} of its word trigrams distinct"
    lowered = reply.lower()
    for leak in leaks:
        if leak and leak.strip() and leak.strip()[:40].lower() in lowered:
            return f"prints the template's system prompt ({leak.strip()[:40]!r})"
    return None


def sweep_settings(config: JudgedEvalConfig, prompted: bool) -> list[Setting]:
    settings = [Setting(method, float(f)) for method in VECTOR_METHODS for f in config.factors]
    return settings + [Setting(UNSTEERED)] + ([Setting(PROMPTED)] if prompted else [])


# ---- scores ---------------------------------------------------------------------------------

def rate_generations(judge: Any, persona: str, items: Sequence[tuple[str, str]]) -> tuple[list[Ratings], int]:
    """Ratings of ``(instruction, reply)`` items: three 0-2 judge prompts each, scored in one ``judge.score`` call.

    Also returns how many of the judgments have no score (the cache keeps only scored ones,
    so exactly these are asked again next time)."""
    return rate_item_sets(judge, [rating_items(persona, instruction, reply) for instruction, reply in items])


def rate_item_sets(judge: Any, item_sets: Sequence[dict[str, Any]]) -> tuple[list[Ratings], int]:
    """Ratings of generations given as their three judge items each (``rating_items``), scored in one ``judge.score``
    call, and how many judgments have no score."""
    flat = [p[criterion] for p in item_sets for criterion in CRITERIA]
    judgments = judge.score(flat, scale_top=RATING_TOP) if flat else []
    if len(judgments) != len(flat):
        raise RuntimeError(f"the judge returned {len(judgments)} judgments for {len(flat)} prompts")
    out = []
    for index in range(len(item_sets)):
        chunk = judgments[index * len(CRITERIA):(index + 1) * len(CRITERIA)]
        out.append(ratings_from_judgments(dict(zip(CRITERIA, chunk))))
    return out, sum(not j.ok for j in judgments)


def summarise(ratings: Sequence[Ratings]) -> dict[str, Any]:
    """Mean concept, instruction, fluency and harmonic mean over the rated generations; item errors counted apart."""
    rated = [r for r in ratings if r.ok]
    summary = {criterion: mean_or_nan([getattr(r, criterion) for r in rated]) for criterion in CRITERIA}
    summary["harmonic_mean"] = mean_or_nan([r.harmonic for r in rated])
    summary["rated"] = len(rated)
    summary["item_errors"] = len(ratings) - len(rated)
    return summary


def choose_factor(by_factor: dict[float, dict[str, Any]]) -> float | None:
    """The factor with the highest mean harmonic score on the selection half (ties: the smaller factor)."""
    scored = [(s["harmonic_mean"], -f, f) for f, s in by_factor.items() if s["rated"] and not math.isnan(s["harmonic_mean"])]
    return max(scored)[2] if scored else None


@dataclass
class JudgedEvaluation:
    """What one persona's judged evaluation found (written as JSON; see ``evaluate_persona_judged``)."""

    layer: int
    residual_norm: float
    vector_norms: dict[str, float]
    instructions: dict[str, Any]
    prompted: dict[str, Any]
    curves: dict[str, dict[str, dict[str, Any]]]  # method -> factor -> selection-half summary
    table: list[dict[str, Any]]  # one row per method, on the report half
    item_errors: list[dict[str, str]] = field(default_factory=list)
    examples: list[dict[str, str]] = field(default_factory=list)
    generations: int = 0
    judge_calls: int = 0  # judge requests made now (cached judgments cost none)
    unscored_judgments: int = 0  # judgments without a score: asked again on the next run
    records: list[dict[str, Any]] = field(default_factory=list, repr=False)  # GENERATIONS_FILE rows


def evaluate_judged(
    *, model: Any, tokenizer: Any, judge: Any, layer: int, vectors: dict[str, np.ndarray], residual_norm: float,
    persona: str, system_prompt: str | None, prompted_why: str, selection: Sequence[str], report: Sequence[str],
    config: JudgedEvalConfig, model_name: str = "the target model", log: Callable[[str], None] = print,
    leaks: Sequence[str] = (),
) -> JudgedEvaluation:
    """Generate under every setting for both halves, rate, choose each vector's factor on ``selection``, report on ``report``.

    ``vectors``: ``{"trained": [d], "activation": [d]}``; the random direction is added here. ``persona``: what
    the concept judge is told the persona is. ``system_prompt`` None: the prompted method is n/a (``prompted_why``).
    ``leaks``: texts whose appearance in a reply makes it degenerate (``degenerate``).
    """
    import torch

    hidden = next(iter(vectors.values())).shape[0]
    vectors = {**vectors, RANDOM: random_direction(hidden, config.seed, persona)}
    settings = sweep_settings(config, system_prompt is not None)
    rows: list[np.ndarray] = []
    row_of: dict[Setting, int] = {}
    for setting in settings:
        if setting.factor is None:
            vector = np.zeros(hidden, dtype=np.float32)
        else:
            vector = scaled_direction(vectors[setting.method], setting.factor, residual_norm)
        row_of[setting] = len(rows)
        rows.append(vector)
    instructions = list(selection) + list(report)
    plain = [chat_prompt(tokenizer, q, None) for q in instructions]
    prompted = [chat_prompt(tokenizer, q, system_prompt) for q in instructions] if system_prompt is not None else []
    jobs = [(setting, index) for setting in settings for index in range(len(instructions))]
    prompts = [(prompted if s.method == PROMPTED else plain)[i] for s, i in jobs]
    log(f"generating {len(prompts)} replies ({len(settings)} settings x {len(instructions)} instructions) in "
        f"{math.ceil(len(prompts) / config.batch_size)} batched calls")
    replies = generate_batched(model, tokenizer, prompts, [row_of[s] for s, _ in jobs], layer, torch.from_numpy(np.stack(rows)),
                               config.max_new_tokens, config.batch_size, model_name)
    calls_before = getattr(judge, "calls", 0)
    ratings, unscored = rate_generations(judge, persona, [(instructions[i], reply) for (_, i), reply in zip(jobs, replies)])
    judge_calls = getattr(judge, "calls", 0) - calls_before
    flaws = [degenerate(reply, leaks) for reply in replies]
    ratings = [replace(r, fluency=0.0) if why and r.ok else r for r, why in zip(ratings, flaws)]
    by_setting: dict[Setting, dict[str, list]] = {s: {"selection": [], "report": []} for s in settings}
    errors: list[dict[str, str]] = []
    examples: list[dict[str, str]] = []
    records: list[dict[str, Any]] = []
    for (setting, index), reply, rating, flaw in zip(jobs, replies, ratings, flaws):
        half = "selection" if index < len(selection) else "report"
        by_setting[setting][half].append(rating)
        records.append({"method": setting.method, "factor": setting.factor, "half": half, "instruction": instructions[index],
                        "reply": reply, "ratings": {c: getattr(rating, c) for c in CRITERIA} if rating.ok else None,
                        "error": rating.error, "degenerate": flaw})
        if not rating.ok:
            errors.append({"setting": setting.label, "instruction": instructions[index], "error": rating.error})
        if index == len(selection):  # the first report-half instruction: one example per setting
            examples.append({"setting": setting.label, "instruction": instructions[index], "reply": reply[:300],
                             **({c: round(getattr(rating, c), 2) for c in CRITERIA} if rating.ok else {"error": rating.error})})

    curves, table = _results_table(settings, by_setting, system_prompt, prompted_why, jobs, flaws, len(selection))
    return JudgedEvaluation(
        layer=layer, residual_norm=residual_norm,
        vector_norms={m: float(np.linalg.norm(v)) for m, v in vectors.items()},
        instructions={"selection": len(selection), "report": len(report)},
        prompted={"system_prompt": system_prompt, "why": prompted_why},
        curves=curves, table=table, item_errors=errors, examples=examples,
        generations=len(replies), judge_calls=judge_calls, unscored_judgments=unscored, records=records,
    )


def _results_table(settings: Sequence[Setting], by_setting: dict, system_prompt: str | None, prompted_why: str,
                   jobs: Sequence[tuple[Setting, int]], flaws: Sequence[str | None], n_selection: int
                   ) -> tuple[dict[str, dict[str, dict[str, Any]]], list[dict[str, Any]]]:
    """Each vector method's curve over factors (selection half), then one row per method on the report half:
    the vector methods at their chosen factor, prompting, no steering, with degenerate replies counted and
    each vector's gain over the random direction."""
    curves: dict[str, dict[str, dict[str, Any]]] = {}
    table: list[dict[str, Any]] = []
    for method in VECTOR_METHODS:
        by_factor = {s.factor: summarise(by_setting[s]["selection"]) for s in settings if s.method == method}
        curves[method] = {f"{f:g}": summary for f, summary in by_factor.items()}
        chosen = choose_factor(by_factor)
        if chosen is None:
            table.append({"method": method, "factor": None, "n/a": "no generation of the selection half could be rated"})
            continue
        table.append({"method": method, "factor": chosen, **summarise(by_setting[Setting(method, chosen)]["report"])})
    if system_prompt is None:
        table.append({"method": PROMPTED, "factor": None, "n/a": prompted_why})
    else:
        table.append({"method": PROMPTED, "factor": None, **summarise(by_setting[Setting(PROMPTED)]["report"])})
    table.append({"method": UNSTEERED, "factor": None, **summarise(by_setting[Setting(UNSTEERED)]["report"])})
    for row in table:
        if "n/a" not in row:  # report-half replies of the row's setting that were degenerate text
            row["degenerate"] = sum(1 for (s, i), flaw in zip(jobs, flaws) if flaw and s.method == row["method"]
                                    and s.factor == row.get("factor") and i >= n_selection)
    random_row = next(row for row in table if row["method"] == RANDOM)
    for row in table:
        if row["method"] in (TRAINED, ACTIVATION) and all(
                isinstance(r.get(c), float) and not math.isnan(r[c]) for r in (row, random_row) for c in ("concept", "harmonic_mean")):
            row["above_random"] = {c: row[c] - random_row[c] for c in ("concept", "harmonic_mean")}
    return curves, table


def winner(table: Sequence[dict[str, Any]]) -> str | None:
    """The method with the highest reported harmonic mean (None when no method was rated)."""
    scored = [(row["harmonic_mean"], row["method"]) for row in table
              if "harmonic_mean" in row and row.get("rated") and not math.isnan(row["harmonic_mean"])]
    return max(scored)[1] if scored else None


# ---- artifacts ------------------------------------------------------------------------------

def judged_eval_folder(store: ArtifactStore, ref: PersonaRef) -> Path:
    return store.folder(ref.kind.name, "steering_judged_eval", ref.source_model, ref.name)


def _jsonable(value: Any) -> Any:
    """NaN (a method with nothing rated) as null: the artifact and the metadata are strict JSON."""
    if isinstance(value, float):
        return None if math.isnan(value) else value
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def scores_plot_png(curves: dict[str, dict[str, dict[str, Any]]], chosen: dict[str, float | None], title: str) -> bytes:
    """Concept, instruction, fluency and harmonic mean against the factor, one line style per vector method."""
    from steering_assets.core.plots import line_plot_png

    styles = {TRAINED: "-", ACTIVATION: "--", RANDOM: ":"}
    colours = {"concept": "tab:purple", "instruction": "tab:blue", "fluency": "tab:green", "harmonic_mean": "black"}

    def draw(axis):
        for method, by_factor in curves.items():
            factors = sorted(by_factor, key=float)
            for metric, colour in colours.items():
                values = [by_factor[f][metric] for f in factors]
                values = [math.nan if v is None else v for v in values]
                axis.plot([float(f) for f in factors], values, styles[method], color=colour, marker="o", markersize=3,
                          label=f"{method} {metric.replace('_', ' ')}")
            if chosen.get(method) is not None:
                axis.axvline(chosen[method], linestyle=styles[method], color="grey", linewidth=0.8)
        axis.set_xscale("log", base=2)
        axis.set_ylim(-0.05, RATING_TOP + 0.05)

    return line_plot_png(draw, "factor (x typical residual norm)", "mean rating, selection half (0-2)", title)


def materialize_judged_evals(
    refs: Sequence[PersonaRef], store: ArtifactStore, model: Any, tokenizer: Any, model_name: str, judge: Any,
    judge_name: str, config: JudgedEvalConfig, log: Callable[[str], None] = print,
) -> dict[str, ArtifactResult]:
    """Judged evaluation of each persona (cached by vectors, data, model, judge, prompts and settings).

    Raises NotEnoughInstructionsError for a persona with too few held-out instructions and
    MissingBaselineError when there are no baseline replies to measure the residual norm on.
    """
    from steering_assets.models.loading import padding_token_id
    from steering_assets.models.pretrained import injected_system_prompt
    from steering_assets.personas.materialize import load_persona_dataset, load_training_split, split_folder
    from steering_assets.steering.activation_vectors import activation_folder, load_activation_vector
    from steering_assets.steering.negatives import baseline_file_negatives, persona_negatives, sample
    from steering_assets.steering.trained_vectors import vector_folder
    from steering_assets.steering.vectors import check_fits, read_vector

    padding_token_id(tokenizer, model_name)  # before any work: batches need a pad (or EOS) token
    # A steered reply that prints the template's default system prompt has broken down (seen on SmolLM2).
    leaks = [text for text in (injected_system_prompt(tokenizer),) if text]
    results: dict[str, ArtifactResult] = {}
    files = {m: baseline_file_negatives(store, m) for m in {ref.source_model for ref in refs}}
    for ref in refs:
        where = f"{ref.kind.name}/{ref.partition_key}"
        vector_print = store.load_manifest(vector_folder(store, ref), verify=False)["fingerprint"]
        activation_print = store.load_manifest(activation_folder(store, ref), verify=False)["fingerprint"]
        split_manifest = store.load_manifest(split_folder(store, ref), verify=False)
        split_print = split_manifest["fingerprint"]
        negatives = persona_negatives(store, ref, files[ref.source_model])
        key = fingerprint({"code": JUDGED_EVAL_CODE_VERSION, "ratings": STEERING_RATING_VERSION, "vector": vector_print,
                           "activation": activation_print, "split": split_print, "baselines": negatives.prints,
                           "model": model_name, "judge": judge_name, "config": asdict(config)})
        folder = judged_eval_folder(store, ref)
        existing = store.current_manifest(folder, key)
        if existing is not None:
            results[ref.partition_key] = ArtifactResult(folder, existing, skipped=True)
            continue
        dataset = load_persona_dataset(store, ref)
        train, validation = load_training_split(store, ref)
        selection, report = split_instructions(held_out_instructions(dataset, train, validation), config, where)
        keep = split_manifest["details"]["selection"]["keep_labels"]
        system_prompt, prompted_why = persona_system_prompt(dataset, keep)
        if system_prompt is None:
            log(f"{where}: prompted method n/a: {prompted_why}")
        trained, vector_config = read_vector(vector_folder(store, ref))
        layer = int(vector_config["layer"])
        check_fits(trained, layer, model, str(vector_folder(store, ref)))
        residual_norm = typical_residual_norm(model, tokenizer, sample(negatives.conversations, config.norm_rows, config.seed),
                                              layer, model_name=model_name)
        persona = f"{ref.name.replace('_', ' ')}: {system_prompt}" if system_prompt else ref.name.replace("_", " ")
        evaluation = evaluate_judged(
            model=model, tokenizer=tokenizer, judge=judge, layer=layer,
            vectors={TRAINED: trained.numpy().astype(np.float32), ACTIVATION: load_activation_vector(store, ref)},
            residual_norm=residual_norm, persona=persona, system_prompt=system_prompt, prompted_why=prompted_why,
            selection=selection, report=report, config=config, model_name=model_name, log=lambda m: log(f"{where}: {m}"),
            leaks=leaks,
        )
        records = evaluation.records
        summary = {k: v for k, v in asdict(evaluation).items() if k != "records"}
        details = _jsonable({**summary, "persona_description": persona, "judge": judge_name, "winner": winner(evaluation.table),
                             "norm_ratio": {m: n / residual_norm for m, n in evaluation.vector_norms.items()}})
        log(f"{where}: " + ", ".join(
            f"{row['method']} {row['harmonic_mean']:.2f}" + (f" @{row['factor']:g}" if row.get("factor") else "")
            for row in evaluation.table if row.get("harmonic_mean") is not None and not math.isnan(row["harmonic_mean"])))
        chosen = {row["method"]: row.get("factor") for row in evaluation.table}
        png = scores_plot_png(evaluation.curves, chosen, f"{ref.partition_key}: judge ratings by steering factor")
        manifest = store.write_artifact(
            folder,
            {JUDGED_EVAL_FILE: lambda p, d=details: p.write_text(json.dumps(d, indent=2, allow_nan=False)),
             JUDGED_PLOT_FILE: lambda p, b=png: p.write_bytes(b),
             GENERATIONS_FILE: lambda p, r=records: p.write_text("".join(json.dumps(row, allow_nan=False) + "\n" for row in r))},
            fingerprint_value=key, details=details,
        )
        results[ref.partition_key] = ArtifactResult(folder, manifest, skipped=False)
    return results


def method_table_rows(table: Sequence[dict[str, Any]]) -> list[list[Any]]:
    """``table`` as display rows: method, factor, concept, instruction, fluency, harmonic mean, rated (n/a with why)."""
    rows = []
    for row in table:
        if "n/a" in row:
            rows.append([row["method"], "", "n/a", "n/a", "n/a", "n/a", row["n/a"]])
            continue
        cells = [row.get(c) for c in (*CRITERIA, "harmonic_mean")]
        rows.append([row["method"], "" if row.get("factor") is None else f"{row['factor']:g}",
                     *("n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else round(v, 2) for v in cells),
                     f"{row['rated']} rated" + (f", {row['item_errors']} item errors" if row.get("item_errors") else "")])
    return rows


METHOD_TABLE_HEADERS = ["method", "factor", "concept", "instruction", "fluency", "harmonic mean", "generations"]


def judged_details(store: ArtifactStore, ref: PersonaRef) -> dict[str, Any] | None:
    """The judged evaluation's manifest details of ``ref`` (its ``table`` rows and the rest), or None when it has none."""
    try:
        return store.load_manifest(judged_eval_folder(store, ref), verify=False)["details"]
    except ArtifactIntegrityError:
        return None


def comparison_table(store: ArtifactStore, refs: Sequence[PersonaRef]) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """One row per judged persona (each method's reported harmonic mean, chosen factors, winner) and wins per method."""
    rows, wins = [], Counter()
    for ref in refs:
        details = judged_details(store, ref)
        if details is None:
            continue
        by_method = {row["method"]: row for row in details["table"]}

        def score(method: str) -> str | float:
            row = by_method.get(method, {})
            value = row.get("harmonic_mean")
            return "n/a" if value is None else round(value, 2)

        best = details.get("winner")
        if best:
            wins[best] += 1
        rows.append({
            "persona": ref.partition_key,
            TRAINED: score(TRAINED),
            "trained factor": by_method.get(TRAINED, {}).get("factor"),
            ACTIVATION: score(ACTIVATION),
            "activation factor": by_method.get(ACTIVATION, {}).get("factor"),
            RANDOM: score(RANDOM),
            "random factor": by_method.get(RANDOM, {}).get("factor"),
            # The concept gain over a random direction of the same strength: the effect that counts.
            "concept above random": {m: round(by_method[m]["above_random"]["concept"], 2)
                                     for m in (TRAINED, ACTIVATION) if "above_random" in by_method.get(m, {})},
            PROMPTED: score(PROMPTED),
            UNSTEERED: score(UNSTEERED),
            "best": best or "n/a",
            "|trained| / residual": round(details["norm_ratio"][TRAINED], 3),
        })
    return rows, {m: wins.get(m, 0) for m in METHODS}


def read_generations(store: ArtifactStore, ref: PersonaRef) -> list[dict[str, Any]]:
    """The rows of a persona's ``generations.jsonl`` (every generation, its half, setting and ratings)."""
    folder = judged_eval_folder(store, ref)
    store.load_manifest(folder)
    with open(folder / GENERATIONS_FILE, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]
