"""Run settings the demo uses where they differ from the defaults, and why.

The demo runs SmolLM2-135M-Instruct on two CPU cores inside ten minutes, so every stage is cut to
the least that still reads: short replies, few questions, short training. The step times behind
these numbers are in notes/REAL_MODELS_NOTES.md (about 0.7 s a 48-token reply at batch 16, 35 s
for 20 training steps at batch 4). Real runs use the defaults. Each setting is the product's own run config class for an asset, turned
into Dagster run config by ``steering_assets.definitions.asset_run_config`` (no op names here).
"""

from steering_assets.definitions import asset_run_config
from steering_assets.features.assets import TraitClassifiersConfig
from steering_assets.personas.assets import TrainingSplitConfig
from steering_assets.personas.generation_assets import RolloutGenerationConfig
from steering_assets.steering.assets import (
    ActivationVectorConfig,
    JudgedEvalConfig,
    SteeringEvalConfig,
    SteeringVectorConfig,
)

# Generation: 12 extraction questions per role instruction (2 instructions, so 24 replies a role and 24
# default replies), every question of a trait (10, each asked under its pos and its neg instruction, and
# by the default assistant). 48 tokens show a voice; assistant-axis generates 512.
DEMO_GENERATION = {"max_new_tokens": 48}
DEMO_ROLE_QUESTIONS = 12


def generation_run_config(kind_name: str) -> dict:
    questions = {"questions": DEMO_ROLE_QUESTIONS} if kind_name == "roles" else {}
    return asset_run_config({(kind_name, "generated_rollouts"): RolloutGenerationConfig(**DEMO_GENERATION, **questions)})


# Roles: 6 of the 12 questions held out, never trained on, for the judged evaluation (3 choose the factor,
# 3 report: with 2 a side, one degenerate reply decided the factor); of the 12 kept replies left, about 10
# train and 2 validate (a role reply is ~90 tokens), so the training logs an eval loss. Traits: no judged evaluation in the demo, so nothing is held out; the judge
# rates SmolLM2's trait replies lower than its role replies (pos medians 60-85 of 100), so the keep
# threshold is 60 instead of assistant-axis's 75, which kept 4 and 7 of 10 replies.
DEMO_SPLITS = {
    "roles": {"held_out_questions": 6, "train_tokens": 720},
    "traits": {"min_score": 60, "train_tokens": 450},
}


def dataset_run_config(kind_name: str) -> dict:
    return asset_run_config({(kind_name, "persona_training_split"): TrainingSplitConfig(**DEMO_SPLITS[kind_name])})


# 12 steps at batch 4 on 96-token examples: about 20 s a persona. The vector's direction is what the
# evaluations use (they rescale it to the layer's typical norm), and it is set in the first steps.
DEMO_STEERING_TRAINING = {
    "max_steps": 12,
    "learning_rate": 0.05,
    "max_length": 96,
    "eval_steps": 6,
    "save_steps": 6,
    "per_device_batch_size": 4,
    "warmup_steps": 2,
}
DEMO_ACTIVATION = {"rows": 32}
# 4 neutral prompts, unsteered and at a quarter of the typical residual norm (where SmolLM2's vectors
# read before the text breaks, notes/REAL_MODELS_NOTES.md), for the vector and the random direction.
DEMO_EVALUATION = {"held_out_rows": 16, "n_prompts": 4, "coefficients": [0.0, 0.25], "max_new_tokens": 24}


def steering_run_config(kind_name: str) -> dict:
    return asset_run_config({
        (kind_name, "steering_vector"): SteeringVectorConfig(**DEMO_STEERING_TRAINING),
        (kind_name, "persona_activation_vector"): ActivationVectorConfig(**DEMO_ACTIVATION),
        (kind_name, "steering_eval"): SteeringEvalConfig(**DEMO_EVALUATION),
    })


# The judge-scored comparison: 6 held-out instructions (3 choose the factor, 3 report), 40-token greedy
# replies, factors 0.125 and 0.25 typical norms: 8 settings (trained, activation and random at two
# factors, prompted, unsteered) = 48 generations and 144 judge items a persona.
DEMO_JUDGED_EVALUATION = {"instructions": 6, "max_new_tokens": 40, "factors": [0.125, 0.25], "norm_rows": 16}


def judged_run_config(kind_name: str) -> dict:
    return asset_run_config({(kind_name, "steering_judged_eval"): JudgedEvalConfig(**DEMO_JUDGED_EVALUATION)})


# The concept classifiers: logistic and ridge regression only (the linear SVM and the MLP took most of the
# stage's 28 s on the demo's ~40 sentences a trait, for no better cross-validated score).
DEMO_CLASSIFIERS = {"models": ["logistic", "ridge"]}


def feature_run_config() -> dict:
    return asset_run_config({("concepts", "trait_classifiers"): TraitClassifiersConfig(**DEMO_CLASSIFIERS)})


# Persona space: the demo's roles keep 10-24 replies each, fewer than assistant-axis's 50; the PCA of 3 roles
# has at most 2 components; capping on one role-play and one multi-turn prompt a role, 2 neutral prompts and the
# perplexity of 12 default replies, 24-token replies, the axis added at one strength.
DEMO_ROLE_VECTORS = {"min_replies": 5, "batch_size": 8}
DEMO_PCA = {"n_components": 2}
DEMO_CAPPING_EVAL = {"questions_per_role": 1, "neutral_prompts": 2, "neutral_rows": 12, "max_new_tokens": 24, "addition_factors": [0.25]}


def role_vector_run_config() -> dict:
    from steering_assets.persona_space.assets import RoleVectorConfig

    return asset_run_config({("roles", "role_vector"): RoleVectorConfig(**DEMO_ROLE_VECTORS)})


def persona_space_run_config() -> dict:
    from steering_assets.persona_space.assets import CappingEvalConfig, PersonaPcaConfig

    return asset_run_config({("persona_space", "persona_pca"): PersonaPcaConfig(**DEMO_PCA),
                             ("persona_space", "capping_eval"): CappingEvalConfig(**DEMO_CAPPING_EVAL)})
