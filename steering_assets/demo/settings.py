"""Run settings the demo uses where they differ from the defaults, and why.

The demo model is tiny and trained briefly, and each demo answer's persona is decided in
its first few tokens; short examples put the training signal there and keep `make demo`
fast on two CPU cores. Real runs use the defaults (longer examples, more steps).
"""

DEMO_STEERING_TRAINING = {
    "max_steps": 80,
    "learning_rate": 0.1,
    "max_length": 48,
    "eval_steps": 20,
    "save_steps": 20,
    "per_device_batch_size": 8,
    "warmup_steps": 5,
}


# Fewer replies per side than the defaults: the demo voices are distinct after a few dozen.
DEMO_ACTIVATION = {"rows": 96}
# Coefficients in typical residual norms; each is a full generation and scoring pass, for the vector and for
# the random direction. Every coefficient samples from the same seed, so the others' numbers do not move.
# The tiny demo model's vectors peak at 0.5-1 typical norms (0.25 never did).
DEMO_EVALUATION = {"held_out_rows": 60, "n_prompts": 12, "coefficients": [0.0, 0.5, 1.0]}


def steering_run_config(kind_name: str) -> dict:
    return {
        "ops": {
            f"{kind_name}__steering_vector": {"config": DEMO_STEERING_TRAINING},
            f"{kind_name}__persona_activation_vector": {"config": DEMO_ACTIVATION},
            f"{kind_name}__steering_eval": {"config": DEMO_EVALUATION},
        }
    }


# The judge-scored comparison (steering_judged_eval): 8 held-out instructions (4 choose the factor,
# 4 report) and 32-token replies, which show the demo voices; factors 0.5 and 1 typical residual norms (where
# the tiny model's vectors peak): 8 settings (three vector methods at two factors, prompted, unsteered), so each
# persona costs 64 generations and 192 judge prompts.
DEMO_JUDGED_EVALUATION = {"instructions": 8, "max_new_tokens": 32, "factors": [0.5, 1.0]}


def judged_run_config(kind_name: str) -> dict:
    return {"ops": {f"{kind_name}__steering_judged_eval": {"config": DEMO_JUDGED_EVALUATION}}}
