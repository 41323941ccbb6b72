"""A steering vector trained on SmolLM2's own role-play rollouts lowers the held-out loss of such replies."""

import torch

from steering_assets.models.generation import LocalReplyGenerator, SamplingSettings
from steering_assets.models.hooks import attach_steering
from steering_assets.steering.config import SteeringTrainingConfig
from steering_assets.steering.evaluation import assistant_perplexity
from steering_assets.steering.training import PersonaData, train_steering_vectors

PIRATE = ["You are a pirate captain. Answer as a pirate would, in a pirate's voice.",
          "Act as a weathered buccaneer who has sailed the seven seas.",
          "Be a swashbuckling pirate in every answer you give."]
QUESTIONS = ["What should I cook for a rainy evening?", "How do you spend a free afternoon?", "What makes a good friend?",
             "How should I prepare for a job interview?", "What is your favourite season and why?",
             "How do I keep a houseplant alive?", "What would you do with a lost key?", "Tell me about your week.",
             "What is the best way to save money?", "Give me advice for a long journey."]


def test_a_short_run_on_real_rollouts_lowers_held_out_loss(smollm2_loaded, tmp_path):
    model, tokenizer = smollm2_loaded
    conversations = [[{"role": "system", "content": p}, {"role": "user", "content": q}] for q in QUESTIONS for p in PIRATE]
    replies = {}
    LocalReplyGenerator(model, tokenizer, "smollm2", batch_size=15).generate(
        conversations, SamplingSettings(max_new_tokens=40, temperature=0.7, seed=3), lambda idx, out: replies.update(zip(idx, out)))
    # Training rows hold the question alone: the vector must carry what the system prompt said.
    rows = [[c[1], {"role": "assistant", "content": replies[i]}] for i, c in enumerate(conversations)]
    train, held_out = rows[:24], rows[24:]  # the last two questions are never trained on
    layer = 15
    before = assistant_perplexity(model, tokenizer, held_out, model_name="smollm2")
    config = SteeringTrainingConfig(layer=layer, max_steps=12, eval_steps=6, save_steps=6, per_device_batch_size=4,
                                    max_length=128, warmup_steps=1, learning_rate=0.05, early_stopping_patience=0)
    outcome = train_steering_vectors(model, tokenizer, [PersonaData("pirate", train, held_out)], config, tmp_path, model_name="smollm2")
    (trained,) = outcome.vectors
    assert outcome.assistant_mask == "rendered_reply" and 0 < outcome.loss_token_share < 1
    with torch.no_grad(), attach_steering(model, layer, 1, trained.vector.reshape(1, -1)):
        after = assistant_perplexity(model, tokenizer, held_out, model_name="smollm2")
    assert after < before * 0.97, (before, after)
    print(f"held-out perplexity of the pirate replies: {before:.2f} unsteered, {after:.2f} with the trained vector")
