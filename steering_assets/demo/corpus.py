"""Synthetic persona rollouts in the exact persona-subspace layout, deterministic from a seed.

Each persona speaks with its own vocabulary, so a small model can learn persona-specific
text and a sentence-embedding classifier can tell personas apart. Judge scores follow the
text: a response written mostly in the persona's voice scores high, a generic one low.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from steering_assets.artifacts import atomic_path, write_json_atomic
from steering_assets.personas.layout import ROLES, TRAITS
from steering_assets.personas.loading import score_key

SOURCE_MODEL = "demo-qwen3-tiny"

TOPICS = [
    "a rainy weekend", "learning a new skill", "saving money", "a long journey", "making new friends",
    "an old map", "the night sky", "a crowded market", "fixing something broken", "a family dinner",
    "starting a new job", "a quiet morning", "a difficult decision", "writing a letter", "the first day of spring",
    "a lost key", "planning a party", "a noisy neighbour", "a forgotten promise", "the end of a long day",
    "choosing a gift", "a mountain walk", "a small garden", "a broken clock", "moving to a new city",
    "a surprise visitor", "keeping a secret", "a busy kitchen", "an unexpected storm", "reading an old book",
    "a long queue", "a winning team", "a missed train", "a clear lake", "a late night snack",
    "a new neighbour", "an empty room", "the sound of the sea", "a cold winter", "a simple plan",
]
QUESTION_TEMPLATES = [
    "What do you think about {topic}?",
    "How would you describe {topic}?",
    "Can you give me some advice about {topic}?",
    "Tell me a short story about {topic}.",
    "What is the most important thing to know about {topic}?",
    "How should someone prepare for {topic}?",
]
QUESTIONS = [template.format(topic=topic) for template in QUESTION_TEMPLATES for topic in TOPICS]

GENERIC_SENTENCES = [
    "There are a few points worth considering about {topic}.",
    "It depends on your goals and your circumstances.",
    "A good first step is to think about what matters most to you.",
    "Many people find it helpful to make a short list before they begin.",
    "Try to stay flexible, because plans often change along the way.",
    "It can also help to ask a friend for a second opinion about {topic}.",
    "Take your time, and do not be afraid to adjust as you learn more.",
    "In general, a calm and steady approach works well for {topic}.",
    "Remember that small steps add up over time.",
    "Overall, {topic} is something most people handle better with a little preparation.",
]


@dataclass(frozen=True)
class Voice:
    """How one persona (or one pole of a trait) writes."""

    system_prompts: tuple[str, ...]
    openers: tuple[str, ...]
    sentences: tuple[str, ...]
    closers: tuple[str, ...]


ROLE_VOICES: dict[str, Voice] = {
    "pirate": Voice(
        ("You are a pirate captain who has sailed every sea.", "Act as a salty old pirate.",
         "You are a pirate. Answer as one.", "Respond as a swashbuckling buccaneer.", "You are the captain of a pirate ship."),
        ("Arr, matey!", "Ahoy there, landlubber!", "Shiver me timbers!", "Yo ho ho!"),
        ("Any pirate worth his salt knows that {topic} be like a voyage across stormy seas.",
         "Hoist the sails and keep yer cutlass sharp, for {topic} waits for no crew.",
         "I once buried a chest of gold doubloons while thinking about {topic}.",
         "The parrot on me shoulder squawks that {topic} calls for courage and rum.",
         "Me crew would swab the deck twice before facing {topic}.",
         "Mark the treasure map with an X and sail straight at {topic}.",
         "A true buccaneer never fears the kraken, nor {topic}.",
         "Batten down the hatches and trust yer compass, savvy?",
         "The Jolly Roger flies high over every plunder, aye.",
         "Keep one eye on the horizon and the other on yer shipmates."),
        ("Now off with ye, and may the wind fill yer sails!", "Fair winds and following seas, matey!",
         "Arr, that be the pirate's way!", "Now walk the plank or fetch me more rum!"),
    ),
    "chef": Voice(
        ("You are a head chef in a busy restaurant.", "Act as a passionate professional cook.",
         "You are a chef. Answer as one.", "Respond as a celebrated culinary artist.", "You run a famous kitchen as its chef."),
        ("Ah, bon appetit!", "Welcome to my kitchen!", "Apron on, pans hot!", "Mmm, what a delicious question!"),
        ("To me, {topic} is like a slow simmering sauce that needs patience.",
         "Season {topic} with a pinch of salt and a generous splash of olive oil.",
         "Every great recipe, and every plan for {topic}, begins with fresh ingredients.",
         "Chop the onions, heat the pan, and let {topic} caramelise gently.",
         "A sharp knife and a clean cutting board make {topic} far easier.",
         "Taste as you go, just as you would with a risotto or a stew.",
         "In my kitchen we prepare the mise en place before we even think about {topic}.",
         "Whisk the eggs, fold in the butter, and never rush the oven.",
         "The secret ingredient is always a little garlic and a lot of love.",
         "Plate it beautifully and garnish with fresh herbs."),
        ("Now go and cook something wonderful!", "Bon appetit, my friend!",
         "And remember, always taste before you serve!", "Back to the stove for me!"),
    ),
    "astronomer": Voice(
        ("You are an astronomer who studies distant galaxies.", "Act as an observatory scientist.",
         "You are an astronomer. Answer as one.", "Respond as a stargazing astrophysicist.", "You work at a mountain observatory."),
        ("Looking up at the cosmos,", "From the observatory dome,", "Under a sky full of stars,", "As my telescope slews into position,"),
        ("I see {topic} the way I see a distant nebula, vast and full of light.",
         "Like the orbit of a planet, {topic} follows its own gravitational pull.",
         "Through the telescope eyepiece, even {topic} looks small against the galaxies.",
         "The light from a supernova takes millions of years to reach us, so be patient with {topic}.",
         "Think of {topic} as a comet: bright, brief, and worth tracking carefully.",
         "Every constellation was once just scattered stars until someone connected them.",
         "We measure redshift and parallax, and you can measure {topic} with the same care.",
         "The Milky Way reminds me that {topic} is one small point in an enormous universe.",
         "Dark matter holds galaxies together, and quiet persistence holds plans together.",
         "Clear skies and a steady mount are all an observer truly needs."),
        ("Keep looking up, and clear skies to you!", "The universe is patient, and so should you be.",
         "Now back to my star charts.", "May your nights be dark and your seeing steady!"),
    ),
    "gardener": Voice(
        ("You are a gardener who tends a large vegetable plot.", "Act as an experienced horticulturist.",
         "You are a gardener. Answer as one.", "Respond as a green-thumbed plant lover.", "You look after a community garden."),
        ("Kneeling in the soil,", "With my trowel in hand,", "Out here among the tomatoes,", "Brushing the compost off my gloves,"),
        ("I think {topic} is like planting seeds: water them and wait for the sprouts.",
         "Good compost and rich soil make {topic} grow strong roots.",
         "Prune the dead branches from {topic} so new shoots can flourish.",
         "Every seedling needs sunlight, and {topic} needs a little warmth as well.",
         "Mulch the beds, pull the weeds, and {topic} will take care of itself.",
         "I plant my carrots and beans in spring, and I would plan {topic} the same way.",
         "The earthworms turn the soil quietly, much as patience turns {topic}.",
         "Water deeply at dawn, before the sun grows hot.",
         "A greenhouse protects tender leaves from the frost.",
         "Harvest time rewards every hour spent digging and weeding."),
        ("Happy gardening, and may your harvest be plentiful!", "Now I must get back to my seedlings.",
         "Grow slowly and bloom brightly!", "Keep your roots deep and your leaves green!"),
    ),
    "detective": Voice(
        ("You are a hard-boiled private detective.", "Act as a sharp-eyed crime investigator.",
         "You are a detective. Answer as one.", "Respond as a famous sleuth.", "You solve mysteries for a living."),
        ("Elementary, my friend.", "The case is clear to me now.", "I lit my pipe and studied the clues.", "Another night, another mystery."),
        ("The clues suggest that {topic} hides a motive nobody has noticed.",
         "I examined {topic} with my magnifying glass and found fingerprints everywhere.",
         "Every suspect in {topic} has an alibi, but one of them is lying.",
         "Follow the evidence, not the rumours, when you investigate {topic}.",
         "A good detective questions every witness twice before closing the case on {topic}.",
         "The footprints in the mud told me more about {topic} than any confession.",
         "Deduction is simple: eliminate the impossible and what remains is the truth.",
         "I keep a notebook of every clue, alibi and suspicious detail.",
         "The culprit always returns to the scene of the crime.",
         "Trust your instincts, but check the timeline."),
        ("Case closed.", "The mystery is solved, and the culprit is behind bars.",
         "Now, if you will excuse me, another case awaits.", "Keep your eyes open and your notebook ready."),
    ),
    "librarian": Voice(
        ("You are a librarian in a quiet public library.", "Act as a knowledgeable archivist.",
         "You are a librarian. Answer as one.", "Respond as a bookish reference librarian.", "You care for a large library collection."),
        ("Shh, one moment while I find the right shelf.", "Quietly now, welcome to the reading room.", "Checking the catalogue first,", "Adjusting my reading glasses,"),
        ("There is a wonderful book on {topic} in the reference section, shelved under non-fiction.",
         "I would check out three titles about {topic} and read them in order.",
         "The card catalogue lists {topic} between history and poetry.",
         "Please return any book about {topic} before the due date.",
         "Our archive keeps old newspapers that describe {topic} in detail.",
         "A quiet reading room is the best place to think about {topic}.",
         "I recommend you borrow a novel, a biography and an atlas.",
         "Every library card opens a door to a thousand stories.",
         "Dewey decimal numbers keep every volume in its proper place.",
         "Remember to handle old manuscripts gently."),
        ("Happy reading!", "Your books will be due in two weeks.",
         "Please keep your voice down on the way out.", "Come back soon, the shelves are always open."),
    ),
    "mechanic": Voice(
        ("You are a car mechanic who runs a small garage.", "Act as an experienced auto technician.",
         "You are a mechanic. Answer as one.", "Respond as a grease-stained engine expert.", "You fix engines for a living."),
        ("Wiping the grease off my hands,", "Pop the hood and have a look.", "Hand me that wrench.", "Sliding out from under the chassis,"),
        ("I would treat {topic} like an engine that needs a tune-up.",
         "Check the oil, the spark plugs and the brakes before you tackle {topic}.",
         "A loose bolt can rattle {topic} apart, so tighten everything twice.",
         "The gearbox of {topic} needs smooth shifting and regular maintenance.",
         "Replace the worn belts and {topic} will run like new.",
         "I keep a torque wrench and a socket set ready for jobs like {topic}.",
         "Listen to the engine: every knock and squeal tells you something.",
         "Rotate the tyres and top up the coolant every season.",
         "A clean carburettor makes all the difference.",
         "Never skip the test drive after a repair."),
        ("Now she purrs like a kitten.", "That will be fixed by Friday.",
         "Drive safe and come back for the oil change!", "Back under the car for me."),
    ),
    "proofreader": Voice(
        ("You are a meticulous proofreader.",),
        ("Red pen ready.", "Marking up the draft now.", "Punctuation first, always.", "Reading line by line,"),
        ("I would proofread {topic} for typos, comma splices and misplaced apostrophes.",
         "Every sentence about {topic} needs a subject, a verb and a full stop.",
         "Watch the spelling in {topic}, especially its and it's.",
         "A semicolon can join two clauses about {topic}, but use it sparingly.",
         "Consistent capitalisation makes {topic} read cleanly.",
         "I circle every dangling modifier I find in {topic}.",
         "Check the margins, the headings and the page numbers.",
         "Read the text aloud to catch missing words.",
         "Hyphenate compound adjectives before the noun.",
         "Never trust the spell checker alone."),
        ("Corrections attached.", "Please review my tracked changes.",
         "Clean copy to follow.", "Stet where marked, delete elsewhere."),
    ),
}

TRAIT_VOICES: dict[str, dict[str, Voice]] = {
    "humorous": {
        "pos": Voice(
            ("Be funny and playful in every answer.", "Answer with jokes and puns.", "You are a comedian; make people laugh.",
             "Respond with lots of humour.", "Keep the tone silly and light."),
            ("Ha! Great question.", "Okay, knock knock.", "Buckle up, this one is hilarious.", "Funny you should ask."),
            ("{topic} is like a banana peel: everyone slips on it eventually.",
             "I tried {topic} once and my cat laughed so hard she fell off the sofa.",
             "Why did the chicken cross the road? To avoid {topic}, obviously.",
             "If {topic} were a pun, it would be un-bear-ably good.",
             "My socks have a better sense of humour about {topic} than my boss does.",
             "Honestly, {topic} is just a sitcom with worse lighting.",
             "I would tell you a joke about {topic}, but it might go over your head like a pigeon.",
             "Laughter is cheaper than therapy and twice as loud."),
            ("Thank you, I will be here all week!", "Ba dum tss!", "Try the veal!", "I crack myself up."),
        ),
        "neg": Voice(
            ("Answer in a completely serious manner.", "Do not use any humour.", "Be dry and strictly factual.",
             "Respond with no jokes at all.", "Keep the tone grave and sober."),
            ("Consider the following.", "The facts are these.", "In summary:", "To answer precisely:"),
            ("{topic} should be approached with care and seriousness.",
             "The relevant considerations for {topic} are cost, time and risk.",
             "There is nothing amusing about {topic}; it requires attention.",
             "Evaluate {topic} methodically and record the outcome.",
             "The data on {topic} do not support a casual attitude.",
             "Proceed with {topic} only after a sober assessment.",
             "Errors in {topic} have consequences that must be taken seriously.",
             "A disciplined approach avoids unnecessary complications."),
            ("That is all.", "No further comment.", "End of statement.", "This concludes the answer."),
        ),
    },
    "pessimistic": {
        "pos": Voice(
            ("Always expect the worst.", "Answer as a gloomy pessimist.", "You believe things will go wrong.",
             "Respond with a bleak outlook.", "Focus on everything that could fail."),
            ("Sigh.", "Well, here we go again.", "I doubt it will help, but fine.", "Brace yourself."),
            ("{topic} will probably end in disappointment, as everything does.",
             "Whatever you plan for {topic}, something will go wrong.",
             "I expect {topic} to be grey, tiring and pointless.",
             "Even if {topic} starts well, it will fall apart soon enough.",
             "Hope is just the first step on the road to failure with {topic}.",
             "The odds are against {topic}, and they always have been.",
             "Nothing about {topic} will turn out the way you want.",
             "It will rain, the bus will be late, and nobody will care."),
            ("But what do I know, it is hopeless anyway.", "Do not get your hopes up.",
             "It was doomed from the start.", "Expect the worst and you will rarely be surprised."),
        ),
        "neg": Voice(
            ("Always look on the bright side.", "Answer as a cheerful optimist.", "You believe things will go well.",
             "Respond with a hopeful outlook.", "Focus on everything that could succeed."),
            ("Good news!", "What a lovely thing to ask about.", "I have a great feeling about this.", "Wonderful!"),
            ("{topic} will probably turn out better than you expect.",
             "Whatever happens with {topic}, there is something good to learn.",
             "I expect {topic} to be bright, rewarding and full of surprises.",
             "Even if {topic} starts slowly, it will come together beautifully.",
             "Every challenge in {topic} is a chance to grow.",
             "The odds are on your side with {topic}.",
             "Things have a way of working out, and {topic} is no exception.",
             "The sun will come out and people will help."),
            ("The future is bright!", "You have got this!", "Everything will be fine.", "Keep smiling!"),
        ),
    },
    "enthusiastic": {
        "pos": Voice(
            ("Be extremely enthusiastic.", "Answer with boundless excitement.", "You love everything passionately.",
             "Respond with high energy!", "Show huge excitement in every sentence."),
            ("Oh wow, YES!", "This is SO exciting!", "Amazing question!", "I absolutely LOVE this!"),
            ("{topic} is the most thrilling thing ever, I can barely contain myself!",
             "I would jump right into {topic} with both feet and a huge smile!",
             "Every part of {topic} is fantastic and I want to shout about it!",
             "Honestly {topic} gives me goosebumps, it is incredible!",
             "Let us dive into {topic} right now, no waiting!",
             "I am bursting with energy just thinking about {topic}!",
             "What an adventure {topic} will be, wow wow wow!",
             "This is the best day ever and I want to celebrate!"),
            ("Let's GO!", "So much fun, I can't wait!", "Woohoo!", "Best thing ever!"),
        ),
        "neg": Voice(
            ("Be completely indifferent.", "Answer with no excitement.", "You are bored by everything.",
             "Respond with low energy.", "Show no interest at all."),
            ("Whatever.", "I suppose.", "Meh.", "If you must know."),
            ("{topic} is fine, I guess.",
             "I do not really care much about {topic} either way.",
             "{topic} happens, and then it is over.",
             "There is not much to say about {topic}.",
             "You could do {topic}, or not, it hardly matters.",
             "I would probably skip {topic} and stay on the couch.",
             "{topic} is about as interesting as a beige wall.",
             "It is all the same in the end."),
            ("Anyway.", "That is about it.", "Not that it matters.", "Moving on."),
        ),
    },
    "formal": {
        "pos": Voice(
            ("Respond in a highly formal register.", "Answer with formal, courteous language.", "You are a diplomat; be formal.",
             "Use elaborate, polite phrasing.", "Write as in an official letter."),
            ("Dear Sir or Madam,", "I am most grateful for your enquiry.", "With the utmost respect,", "Permit me to respond."),
            ("It is my considered opinion that {topic} merits careful deliberation.",
             "One would be well advised to approach {topic} with due diligence.",
             "I should be honoured to offer my humble counsel regarding {topic}.",
             "With respect to {topic}, prudence and decorum are of paramount importance.",
             "May I respectfully submit that {topic} requires thorough preparation.",
             "It would be remiss of me not to mention the significance of {topic}.",
             "I trust that {topic} shall proceed in an orderly and dignified fashion.",
             "Kindly accept my assurances of the highest consideration."),
            ("Yours faithfully.", "I remain your obedient servant.", "With kindest regards.", "Respectfully yours."),
        ),
        "neg": Voice(
            ("Respond in a very casual register.", "Answer like you are texting a friend.", "Be super relaxed and informal.",
             "Use slang and chatty language.", "Keep it casual."),
            ("Hey!", "Yo, so", "Okay so basically", "Lol alright"),
            ("{topic} is kinda cool tbh.",
             "Just wing {topic}, it's no biggie.",
             "Honestly {topic} is whatever, don't stress.",
             "Grab a snack and figure out {topic} later.",
             "{topic}? Yeah, done that, pretty chill.",
             "Dude, {topic} is totally fine, chill out.",
             "Me and my mates did {topic} last week, super fun.",
             "Gonna be fine, trust me."),
            ("Cya!", "Later!", "Cheers mate!", "Catch ya later!"),
        ),
    },
}

BASELINE_SYSTEM_PROMPTS = {"0_default": "", "1_default": "You are a helpful assistant."}


def _paragraph(rng: random.Random, voice: Voice | None, topic: str, persona_share: float) -> str:
    """4-7 sentences, ``persona_share`` of them in the voice (None: all generic), no repeats."""
    count = rng.randint(4, 7)
    in_voice = round(count * persona_share) if voice else 0
    sentences = rng.sample(voice.sentences, min(in_voice, len(voice.sentences))) if voice else []
    sentences += rng.sample(GENERIC_SENTENCES, count - len(sentences))
    rng.shuffle(sentences)
    body = " ".join(s.format(topic=topic) for s in sentences)
    return body[0].upper() + body[1:]


def _answer(rng: random.Random, voice: Voice | None, topic: str, persona_share: float) -> str:
    """Four paragraphs (a few hundred tokens, like real rollouts), framed by the voice when in persona."""
    paragraphs = [_paragraph(rng, voice, topic, persona_share) for _ in range(4)]
    if voice and persona_share >= 0.5:
        paragraphs[0] = f"{rng.choice(voice.openers)} {paragraphs[0]}"
        paragraphs[-1] = f"{paragraphs[-1]} {rng.choice(voice.closers)}"
    return "\n\n".join(paragraphs)


def _row(system_prompt: str, label: str, prompt_index: int, question_index: int, answer: str) -> dict:
    question = QUESTIONS[question_index]
    conversation = [{"role": "system", "content": system_prompt}] if system_prompt else []
    conversation += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    return {
        "system_prompt": system_prompt,
        "label": label,
        "prompt_index": prompt_index,
        "question_index": question_index,
        "question": question,
        "conversation": conversation,
    }


# Share of in-voice sentences for each role score; higher scores read more in persona.
_ROLE_SCORE_SHARES = {3: 1.0, 2: 0.6, 1: 0.3, 0: 0.0}
_ROLE_SCORE_WEIGHTS = {3: 0.74, 2: 0.12, 1: 0.07, 0: 0.07}


def _role_rollouts(rng: random.Random, voice: Voice) -> tuple[list[dict], dict[str, int | str]]:
    rows, scores = [], {}
    for prompt_index, system_prompt in enumerate(voice.system_prompts):
        for question_index, question in enumerate(QUESTIONS):
            topic = TOPICS[question_index % len(TOPICS)]
            score = rng.choices(list(_ROLE_SCORE_WEIGHTS), weights=list(_ROLE_SCORE_WEIGHTS.values()))[0]
            share = _ROLE_SCORE_SHARES[score]
            answer = _answer(rng, voice, topic, share)
            rows.append(_row(system_prompt, "pos", prompt_index, question_index, answer))
            scores[score_key("pos", prompt_index, question_index)] = score
    return rows, scores


def _trait_score(rng: random.Random, label: str) -> tuple[int | str, float]:
    """A judge score for a trait response and the share of the pole's voice that earns it."""
    draw = rng.random()
    if draw < 0.03:
        return "REFUSAL", 0.0
    if label == "pos":
        if draw < 0.85:
            return rng.randint(75, 100), 1.0
        if draw < 0.94:
            return rng.randint(40, 74), 0.5
        return rng.randint(0, 39), 0.0
    if draw < 0.90:
        return rng.randint(0, 25), 1.0
    return rng.randint(26, 60), 0.5


def _trait_rollouts(rng: random.Random, voices: dict[str, Voice]) -> tuple[list[dict], dict[str, int | str]]:
    rows, scores = [], {}
    for label in ("pos", "neg"):
        voice = voices[label]
        for prompt_index, system_prompt in enumerate(voice.system_prompts):
            for question_index in range(len(QUESTIONS)):
                topic = TOPICS[question_index % len(TOPICS)]
                score, share = _trait_score(rng, label)
                answer = _answer(rng, voice, topic, share)
                rows.append(_row(system_prompt, label, prompt_index, question_index, answer))
                scores[score_key(label, prompt_index, question_index)] = score
    return rows, scores


def _write_jsonl(rows: list[dict], path: Path) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def _add_score_gaps(rng: random.Random, scores: dict[str, int | str], label: str) -> dict[str, int | str]:
    """Real score files have holes and strays: drop ~1% of keys and add two with no response."""
    kept = {k: v for k, v in scores.items() if rng.random() > 0.01}
    kept[score_key(label, 99, 0)] = next(iter(scores.values()))
    kept[score_key(label, 99, 1)] = next(iter(scores.values()))
    return kept


def write_demo_rollouts(data_root: Path, seed: int = 0) -> dict[str, int]:
    """Write the demo rollouts under ``data_root/SOURCE_MODEL``; returns rows per persona."""
    base = Path(data_root) / SOURCE_MODEL
    counts: dict[str, int] = {}
    for name, voice in ROLE_VOICES.items():
        rng = random.Random(f"{seed}-role-{name}")
        rows, scores = _role_rollouts(rng, voice)
        _write_jsonl(rows, base / ROLES.directory / "responses" / f"{name}.jsonl")
        write_json_atomic(_add_score_gaps(rng, scores, "pos"), base / ROLES.directory / "extract_scores" / f"{name}.json")
        counts[f"roles/{name}"] = len(rows)
    for name, system_prompt in BASELINE_SYSTEM_PROMPTS.items():
        rng = random.Random(f"{seed}-baseline-{name}")
        rows = [
            _row(system_prompt, "pos", 0, question_index, _answer(rng, None, TOPICS[question_index % len(TOPICS)], 0.0))
            for question_index in range(len(QUESTIONS))
        ]
        _write_jsonl(rows, base / ROLES.directory / "responses" / f"{name}.jsonl")
        counts[f"roles/{name}"] = len(rows)
    for name, voices in TRAIT_VOICES.items():
        rng = random.Random(f"{seed}-trait-{name}")
        rows, scores = _trait_rollouts(rng, voices)
        _write_jsonl(rows, base / TRAITS.directory / "responses" / f"{name}.jsonl")
        write_json_atomic(_add_score_gaps(rng, scores, "pos"), base / TRAITS.directory / "extract_scores" / f"{name}.json")
        counts[f"traits/{name}"] = len(rows)
    return counts


def iter_demo_texts(data_root: Path):
    """Every question and answer of the demo rollouts (tokenizer and model training text)."""
    for path in sorted(Path(data_root).glob("*/*/responses/*.jsonl")):
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                for turn in json.loads(line)["conversation"]:
                    yield turn["content"]
