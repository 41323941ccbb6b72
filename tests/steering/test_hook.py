import pytest
import torch

from steering_assets.models.errors import LayerOutOfRangeError
from steering_assets.models.hooks import SteeringVectors, attach_steering, decoder_layers


@pytest.fixture
def model(tiny_model_factory):
    return tiny_model_factory()


@pytest.fixture
def inputs(tokenizer):
    text = tokenizer.apply_chat_template([{"role": "user", "content": "What do you think about a lost key?"}], tokenize=False)
    return tokenizer([text, text], return_tensors="pt")


def test_returned_hidden_states_include_the_steering(model, inputs):
    with torch.no_grad():
        base = model(**inputs, output_hidden_states=True)
        vector = torch.randn(1, model.config.hidden_size)
        with attach_steering(model, 1, 1, vector):
            steered = model(**inputs, output_hidden_states=True)
    # hidden_states[0] is the embeddings, so layer 1's output is index 2.
    assert torch.allclose(steered.hidden_states[2] - base.hidden_states[2], vector.expand_as(base.hidden_states[2][0]), atol=1e-5)
    assert torch.equal(steered.hidden_states[1], base.hidden_states[1])
    assert not torch.allclose(steered.logits, base.logits)


def test_removing_the_hook_restores_the_exact_base_model(model, inputs):
    with torch.no_grad():
        before = model(**inputs).logits
        handle = attach_steering(model, 2, 1, torch.randn(1, model.config.hidden_size))
        assert hasattr(model, "persona_steering")
        handle.remove()
        after = model(**inputs).logits
    assert torch.equal(before, after)
    assert not hasattr(model, "persona_steering")
    assert all(not layer._forward_hooks for layer in decoder_layers(model))


def test_each_example_adds_its_own_persona_vector(model, inputs):
    vectors = torch.randn(3, model.config.hidden_size)
    with torch.no_grad():
        with attach_steering(model, 0, 3, vectors) as handle:
            handle.steering.set_persona_index(torch.tensor([2, 0]))
            both = model(**inputs).logits
            for row, k in enumerate((2, 0)):
                handle.steering.set_persona_index(torch.tensor([k]))
                single = model(**{key: value[row : row + 1] for key, value in inputs.items()}).logits
                assert torch.allclose(both[row], single[0], atol=1e-5)


def test_tuple_layer_outputs_are_handled():
    steering = SteeringVectors(1, 4)
    with torch.no_grad():
        steering.vectors.fill_(1.0)
    hidden, extra = torch.zeros(2, 3, 4), object()
    result = steering.hook(None, (), (hidden, extra))
    assert isinstance(result, tuple) and result[1] is extra
    assert torch.equal(result[0], torch.ones(2, 3, 4))
    assert torch.equal(steering.hook(None, (), hidden), torch.ones(2, 3, 4))


@pytest.mark.parametrize("layer", [-1, 4, 99])
def test_layer_outside_the_model_is_refused(model, layer):
    with pytest.raises(LayerOutOfRangeError, match=r"has 4 decoder layers, so the layer must be 0-3"):
        attach_steering(model, layer)
