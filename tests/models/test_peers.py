"""Our difference-of-means vector against steering-vectors' on the real SmolLM2 (a test-only peer, installed
with --no-deps because it declares transformers<5): same pairs, same layer, same token positions."""

import numpy as np
import pytest

from steering_assets.steering.difference_of_means import difference_of_means

QUESTIONS = ["What should I cook for a rainy evening?", "How do you spend a free afternoon?", "What makes a good friend?",
             "Tell me about the sea.", "What would you do with a lost key?", "Give me advice for a long journey."]


def test_last_prompt_token_difference_of_means_matches_steering_vectors(smollm2_loaded):
    import steering_vectors  # installed by `make test` (Makefile: --no-deps)

    model, tokenizer = smollm2_loaded
    positives = [[{"role": "system", "content": "You are a pirate captain."}, {"role": "user", "content": q}] for q in QUESTIONS]
    negatives = [[{"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": q}] for q in QUESTIONS]
    layer = 15
    ours = difference_of_means(model, tokenizer, positives, negatives, layer, pooling="last_prompt_token")
    render = lambda c: tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True)  # noqa: E731
    theirs = steering_vectors.train_steering_vector(
        model, tokenizer, [(render(p), render(n)) for p, n in zip(positives, negatives)], layers=[layer], read_token_index=-1)
    peer = theirs.layer_activations[layer].float().cpu().numpy()
    cosine = float(ours @ peer / (np.linalg.norm(ours) * np.linalg.norm(peer)))
    assert cosine >= 0.99, cosine
    print(f"cosine with steering-vectors: {cosine:.4f}")
    assert np.linalg.norm(ours) == pytest.approx(np.linalg.norm(peer), rel=0.05)
    # The reply-mean pooling (persona_activation_vector's) reads other tokens: a different vector.
    with_replies = [c + [{"role": "assistant", "content": "Arr, I'd say a hearty stew, matey."}] for c in positives]
    plain = [c + [{"role": "assistant", "content": "A warm soup is a good choice."}] for c in negatives]
    reply_mean = difference_of_means(model, tokenizer, with_replies, plain, layer)
    assert reply_mean.shape == ours.shape and not np.allclose(reply_mean, ours)
