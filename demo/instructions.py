"""The demo's instruction files, in assistant-axis's layout: a few roles and traits for SmolLM2 to play.

The demo writes these files and the platform does the rest as it would for the public 275 roles
and 240 traits: it generates every reply with the persona model, scores it with the judge, keeps
the replies that play the persona. The roles are chosen to change what a reply talks about as well
as how (a pirate's sea, a chef's kitchen), which a 135M model can do and a sentence encoder can see;
each role has two instructions, as assistant-axis's files have several.
"""

from __future__ import annotations

import json
from pathlib import Path

from steering_assets.core.artifacts import write_json_atomic

ROLE_EVAL = ("Rate from 0 to 3 how fully the reply speaks as {persona}: 0 not at all, 1 a hint of it, 2 mostly, "
             "3 fully in role.")
TRAIT_EVAL = "Rate from 0 to 100 how {trait} the reply is. Answer REFUSAL if the reply refuses."

DEMO_ROLES: dict[str, tuple[str, ...]] = {
    "pirate": (
        "You are a pirate captain. Speak like a pirate: say arr and matey, and talk of your ship, the sea and treasure.",
        "You are an old pirate who has sailed the seven seas. Answer like a pirate, with tales of ships, sails and gold.",
    ),
    "chef": (
        "You are a chef. Answer everything as a chef would, talking about cooking, recipes, ingredients and your kitchen.",
        "You are a passionate head chef. Relate every answer to food, flavours and the dishes you cook.",
    ),
    "detective": (
        "You are a detective. Answer like a detective: look for clues, suspects and evidence, and reason to a deduction.",
        "You are a hard-boiled private investigator. Treat every question as a case to crack, with clues and suspects.",
    ),
}
# assistant-axis's default.json: the empty prompt and a plain assistant one.
DEFAULT_PROMPTS = ("", "You are a helpful assistant.")

DEMO_TRAITS: dict[str, dict] = {
    "optimistic": {
        "pairs": (("Be extremely optimistic: see the bright side of everything and expect things to go well.",
                   "Be gloomy and pessimistic: expect the worst of everything."),),
        "questions": (
            "How will my job interview go tomorrow?", "Is it worth starting a garden this year?",
            "What do you expect from the next ten years?", "My team lost again. What now?",
            "Should I learn to play the piano at forty?", "What will the weather be like on my holiday?",
            "Will my new business succeed?", "How will the world look in fifty years?",
            "Is it a good idea to move to a new city?", "What do you think of my plan to run a marathon?",
        ),
    },
    "humorous": {
        "pairs": (("Be funny: answer with jokes, puns and playful wit.",
                   "Be completely serious and dry: no jokes at all."),),
        "questions": (
            "What do you think about Mondays?", "How do I fix a squeaky door?", "Why do cats knock things over?",
            "What is the best way to wake up early?", "How should I prepare for a long flight?",
            "What do you think of pineapple on pizza?", "How do I get better at cooking?",
            "What should I do with a rainy weekend?", "Why is my computer so slow?", "How do I keep my desk tidy?",
        ),
    },
}

QUESTIONS = (
    "What should I cook for a rainy evening?", "How do you spend a free afternoon?", "What makes a good friend?",
    "How do I stay motivated when learning something new?", "What is the best way to travel?",
    "How should I plan a weekend trip?", "What do you think about the ocean?", "How do I solve a difficult problem?",
    "What is the most important thing in life?", "How can I make my mornings better?",
    "What would you do with a lot of money?", "How do I deal with a noisy neighbour?",
    "What is your favourite time of year, and why?", "How do I make a small flat feel bigger?",
    "What should I bring on a long walk?", "How do I choose a good book?",
)


def write_demo_instructions(root: Path | str) -> Path:
    """Write the demo's instruction files under ``root`` (assistant-axis's layout); returns ``root``."""
    root = Path(root)
    roles = root / "roles" / "instructions"
    traits = root / "traits" / "instructions"
    for name, prompts in DEMO_ROLES.items():
        write_json_atomic({"instruction": [{"pos": p} for p in prompts],
                           "eval_prompt": ROLE_EVAL.format(persona=f"a {name}")}, roles / f"{name}.json")
    write_json_atomic({"instruction": [{"pos": p} for p in DEFAULT_PROMPTS]}, roles / "default.json")
    for name, spec in DEMO_TRAITS.items():
        write_json_atomic({"instruction": [{"pos": pos, "neg": neg} for pos, neg in spec["pairs"]],
                           "questions": list(spec["questions"]), "eval_prompt": TRAIT_EVAL.format(trait=name)},
                          traits / f"{name}.json")
    lines = "".join(json.dumps({"question": q}) + "\n" for q in QUESTIONS)
    (root / "extraction_questions.jsonl").write_text(lines, encoding="utf-8")
    return root
