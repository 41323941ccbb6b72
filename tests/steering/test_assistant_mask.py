"""Assistant-reply masks for any chat template: the real Qwen3, Gemma-2 and Llama-3.x templates have no
{% generation %} tags, so the reply is located in the rendering."""

import pytest

from steering_assets.models.assistant_mask import (
    GENERATION_TAGS,
    RENDERED_REPLY,
    AssistantMaskError,
    assistant_masks,
    mask_method,
    rendered_reply_mask,
    tagged_mask,
)
from tests.chat_tokenizers import FAMILIES, build_tokenizer, templates_present

needs_templates = pytest.mark.skipif(not templates_present(), reason="../shared/fixtures/real_world/chat_templates is not present")

END_OF_TURN = {"qwen3": "<|im_end|>", "gemma2": "<end_of_turn>", "llama3": "<|eot_id|>", "llama3.3": "<|eot_id|>"}

CONVERSATIONS = [
    [{"role": "user", "content": "How are you?"}, {"role": "assistant", "content": "Arr, matey! Hoist the sails."}],
    [{"role": "user", "content": "Tell me about the sea."},
     {"role": "assistant", "content": "The footprints in the mud told me more than any confession.\n\nWhisk the eggs."}],
    # Gemma and Llama trim the reply, Qwen3 strips leading newlines: the mask covers what is rendered.
    [{"role": "user", "content": "What do you think about a lost key?"}, {"role": "assistant", "content": "  I am a helpful assistant.\n"}],
]


@pytest.fixture(scope="module", params=list(FAMILIES))
def real(request):
    if not templates_present():
        pytest.skip("../shared/fixtures/real_world/chat_templates is not present")
    return request.param, build_tokenizer(request.param)


@needs_templates
def test_real_templates_have_no_generation_tags_so_the_rendered_method_is_used(real):
    _, tokenizer = real
    assert mask_method(tokenizer) == RENDERED_REPLY


@needs_templates
@pytest.mark.parametrize("index", range(len(CONVERSATIONS)))
def test_masked_tokens_are_exactly_the_reply_and_its_end_of_turn(real, index):
    family, tokenizer = real
    conversation = CONVERSATIONS[index]
    masked = rendered_reply_mask(tokenizer, conversation)
    # The ids are the ones the chat template gives (what TRL would tokenise).
    assert masked.input_ids == tokenizer.apply_chat_template(conversation, tokenize=True, return_dict=True)["input_ids"]
    positions = [i for i, bit in enumerate(masked.assistant_mask) if bit]
    assert positions == list(range(positions[0], positions[-1] + 1))  # one contiguous span
    reply = conversation[-1]["content"]
    rendered_reply = reply.strip() if family != "qwen3" else reply.lstrip("\n")
    expected = tokenizer(rendered_reply, add_special_tokens=False)["input_ids"] + [tokenizer.convert_tokens_to_ids(END_OF_TURN[family])]
    assert [masked.input_ids[i] for i in positions] == expected
    assert tokenizer.decode([masked.input_ids[i] for i in positions]) == rendered_reply + END_OF_TURN[family]
    # Nothing of the user turn or the template boilerplate (Qwen3's empty think block) is in the mask.
    outside = tokenizer.decode([t for t, bit in zip(masked.input_ids, masked.assistant_mask) if not bit])
    assert conversation[0]["content"] in outside


@needs_templates
def test_every_assistant_turn_of_a_longer_conversation_is_masked(real):
    family, tokenizer = real
    conversation = [
        {"role": "user", "content": "How are you?"}, {"role": "assistant", "content": "Arr, matey!"},
        {"role": "user", "content": "Tell me about the sea."}, {"role": "assistant", "content": "Hoist the sails."},
    ]
    masked = rendered_reply_mask(tokenizer, conversation)
    text = tokenizer.decode([t for t, bit in zip(masked.input_ids, masked.assistant_mask) if bit])
    assert text == f"Arr, matey!{END_OF_TURN[family]}Hoist the sails.{END_OF_TURN[family]}"


def test_the_rendered_mask_equals_the_generation_tag_mask(tokenizer, demo_conversations):
    # The demo's ChatML template has {% generation %} tags around reply + <|im_end|>: both methods must agree.
    assert mask_method(tokenizer) == GENERATION_TAGS
    conversations = demo_conversations("pirate", 12) + demo_conversations("chef", 12)
    tagged = assistant_masks(tokenizer, conversations, GENERATION_TAGS)
    rendered = assistant_masks(tokenizer, conversations, RENDERED_REPLY)
    assert [m.input_ids for m in tagged] == [m.input_ids for m in rendered]
    assert [m.assistant_mask for m in tagged] == [m.assistant_mask for m in rendered]
    assert all(0 < m.reply_tokens < len(m.input_ids) for m in rendered)
    assert tagged_mask(tokenizer, conversations[0]) == rendered[0]


def test_a_template_that_changes_the_reply_is_refused_naming_the_template():
    template = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
        "{% if m['role'] == 'assistant' %}{{ m['content'] | upper }}{% else %}{{ m['content'] }}{% endif %}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    tokenizer = build_tokenizer("qwen3", chat_template=template)
    with pytest.raises(AssistantMaskError, match=r"the chat template of 'local-qwen3' renders the assistant reply of conversation 0 "
                                                 r"\(turn 1\) differently from how it was given: given 'Arr, matey! Hoist the sails\.', "
                                                 r"rendered 'ARR, MATEY! HOIST THE SAILS\."):
        rendered_reply_mask(tokenizer, CONVERSATIONS[0])


@needs_templates
def test_gemma2_refuses_a_system_turn_with_a_message_naming_the_template():
    tokenizer = build_tokenizer("gemma2")
    conversation = [{"role": "system", "content": "Be a pirate."}] + CONVERSATIONS[0]
    with pytest.raises(AssistantMaskError, match=r"the chat template of 'local-gemma2' cannot render conversation 0: System role not supported"):
        rendered_reply_mask(tokenizer, conversation)
