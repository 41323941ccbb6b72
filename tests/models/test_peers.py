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


def _import_repeng():
    # repeng 0.4.0 still uses np.float_, which numpy 2 removed: a test-only shim lets it import (its code is unchanged).
    if not hasattr(np, "float_"):
        np.float_ = np.float64
    import repeng  # installed by `make test` (Makefile: --no-deps, it declares numpy<2)

    return repeng


def test_repeng_reads_our_control_vector_gguf_and_steers_as_we_do(smollm2_loaded, tmp_path):
    import torch

    from steering_assets.models.hooks import attach_steering
    from steering_assets.steering.export import ModelShape, write_gguf_control_vector

    repeng = _import_repeng()
    model, tokenizer = smollm2_loaded
    positives = [[{"role": "system", "content": "You are a pirate captain."}, {"role": "user", "content": q}] for q in QUESTIONS]
    negatives = [[{"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": q}] for q in QUESTIONS]
    layer = 15
    vector = difference_of_means(model, tokenizer, positives, negatives, layer, pooling="last_prompt_token")
    vector = vector / np.linalg.norm(vector) * 0.25 * 174.9  # a quarter of block 15's typical norm: readable
    path = tmp_path / "control_vector.gguf"
    write_gguf_control_vector(vector, layer, ModelShape.of(model), path)
    imported = repeng.ControlVector.import_gguf(str(path))
    assert set(imported.directions) == {layer}
    np.testing.assert_array_equal(imported.directions[layer], vector.astype(np.float32))  # bit-identical, block 15 = their 15

    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "Tell me about your week."}], tokenize=False,
                                           add_generation_prompt=True)
    ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
    with torch.no_grad(), attach_steering(model, layer, 1, torch.tensor(vector).reshape(1, -1)):
        ours = model.generate(**ids, max_new_tokens=24, do_sample=False)
    controlled = repeng.ControlModel(model, [layer])
    try:
        controlled.set_control(imported, 1.0)
        with torch.no_grad():
            theirs = controlled.generate(**ids, max_new_tokens=24, do_sample=False)
    finally:
        controlled.unwrap()
    assert tokenizer.decode(theirs[0]) == tokenizer.decode(ours[0])
    print("steered by both:", tokenizer.decode(ours[0, ids["input_ids"].shape[1]:], skip_special_tokens=True))


def test_lm_eval_steered_model_loads_our_steer_file_and_moves_the_loglikelihood(smollm2, smollm2_loaded, tmp_path):
    from lm_eval.api.instance import Instance
    from lm_eval.models.hf_steered import SteeredModel
    from lm_eval.models.huggingface import HFLM

    from steering_assets.steering.export import ModelShape, write_lm_eval_steer

    model, tokenizer = smollm2_loaded
    positives = [[{"role": "system", "content": "You are a pirate captain."}, {"role": "user", "content": q}] for q in QUESTIONS]
    negatives = [[{"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": q}] for q in QUESTIONS]
    vector = difference_of_means(model, tokenizer, positives, negatives, 15, pooling="last_prompt_token")
    vector = vector / np.linalg.norm(vector) * 0.25 * 174.9
    path = tmp_path / "lm_eval_steer.pt"
    write_lm_eval_steer(vector, 15, ModelShape.of(model), path)
    context = "Tell me about your week.\n"
    requests = [Instance(request_type="loglikelihood", doc={}, arguments=(context, ending), idx=i)
                for i, ending in enumerate(["Arr, matey! Me crew and I sailed the seven seas.", "My week was busy with meetings at the office."])]
    plain = HFLM(pretrained=str(smollm2.folder), device="cpu", batch_size=1)
    steered = SteeredModel(pretrained=str(smollm2.folder), steer_path=str(path), device="cpu", batch_size=1)
    (pirate_plain, _), (office_plain, _) = plain.loglikelihood(requests)
    (pirate_steered, _), (office_steered, _) = steered.loglikelihood(requests)
    print(f"log p(pirate ending): {pirate_plain:.2f} -> {pirate_steered:.2f}; log p(office ending): {office_plain:.2f} -> {office_steered:.2f}")
    assert pirate_steered - pirate_plain > 1.0  # the pirate continuation gains over a nat
    assert pirate_steered - pirate_plain > office_steered - office_plain + 1.0  # and more than a plain one
