"""Which tokens of a chat-formatted conversation are the assistant's reply, for any chat template.

Templates that mark the reply with ``{% generation %}`` tags get their mask from transformers
(``return_assistant_tokens_mask``, method ``generation_tags``). Real templates (Qwen3, Gemma-2,
Llama-3.x) have no tags; for them the reply is located in the rendering itself (method
``rendered_reply``):

1. render the conversation (``full``) and, for each assistant turn, the conversation before it
   with ``add_generation_prompt=True`` (``prompt``), which must be a prefix of ``full``;
2. render it again with that turn's content replaced by a marker: the marker's offset is where
   the reply starts in ``full`` (whatever boilerplate the template puts first, such as Qwen3's
   empty ``<think></think>`` block), and the length difference is the rendered reply's length;
3. the rendered reply must be the given reply, at most trimmed of surrounding whitespace (Gemma
   and Llama templates ``trim`` it); anything else is refused, naming the template;
4. tokens overlapping the reply are masked, plus the end-of-turn: the first special token right
   after the reply (``<|im_end|>``, ``<end_of_turn>``, ``<|eot_id|>``), with any whitespace-only
   tokens before it, so the model learns to stop exactly as with ``{% generation %}`` tags that
   enclose the end-of-turn token.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Sequence

from steering_assets.core.errors import InputError

GENERATION_TAGS = "generation_tags"
RENDERED_REPLY = "rendered_reply"
_MARKER = "\u27e6steering-assets-reply-marker\u27e7"


class AssistantMaskError(InputError, ValueError):
    """The assistant reply's tokens cannot be located in a conversation's rendering."""


@dataclass(frozen=True)
class MaskedConversation:
    input_ids: list[int]
    assistant_mask: list[int]  # 1 for the reply (and its end-of-turn) tokens, 0 elsewhere

    @property
    def reply_tokens(self) -> int:
        return sum(self.assistant_mask)


def has_generation_tags(tokenizer: Any) -> bool:
    """Whether the chat template marks assistant text with ``{% generation %}`` (any whitespace-trim variant)."""
    template = getattr(tokenizer, "chat_template", None) or ""
    if isinstance(template, dict):
        template = template.get("default", "")
    return re.search(r"\{%-?\s*generation\s*-?%\}", template) is not None


def mask_method(tokenizer: Any) -> str:
    return GENERATION_TAGS if has_generation_tags(tokenizer) else RENDERED_REPLY


def template_name(tokenizer: Any) -> str:
    return f"the chat template of {getattr(tokenizer, 'name_or_path', '') or type(tokenizer).__name__!r}"


def _render(tokenizer: Any, conversation: list[dict[str, str]], index: int, **kwargs: Any) -> str:
    try:
        return tokenizer.apply_chat_template(conversation, tokenize=False, **kwargs)
    except Exception as err:  # jinja raise_exception (Gemma-2: system role, non-alternating turns), TemplateError
        raise AssistantMaskError(f"{template_name(tokenizer)} cannot render conversation {index}: {err}") from err


def _special_ids(tokenizer: Any) -> set[int]:
    ids = set(getattr(tokenizer, "all_special_ids", []) or [])
    for token_id, token in (getattr(tokenizer, "added_tokens_decoder", None) or {}).items():
        if getattr(token, "special", False):
            ids.add(int(token_id))
    return ids


def _reply_span(tokenizer: Any, conversation: list[dict[str, str]], turn: int, full: str, index: int) -> tuple[int, int]:
    """Character span of assistant turn ``turn``'s reply within ``full``."""
    name = template_name(tokenizer)
    prompt = _render(tokenizer, conversation[:turn], index, add_generation_prompt=True)
    if not full.startswith(prompt):
        raise AssistantMaskError(
            f"{name}: conversation {index} rendered up to its assistant turn {turn} with add_generation_prompt=True "
            "is not a prefix of the full rendering, so the reply's tokens cannot be located"
        )
    reply = conversation[turn]["content"]
    marked = [dict(m) for m in conversation]
    marked[turn]["content"] = _MARKER
    with_marker = _render(tokenizer, marked, index)
    start = with_marker.find(_MARKER)
    length = len(full) - len(with_marker) + len(_MARKER)
    rendered = full[start : start + length] if start >= len(prompt) and length >= 0 else None
    # Templates may trim the reply (Gemma, Llama: `| trim`; Qwen3: `lstrip('\n')`), nothing else.
    if rendered is None or rendered not in reply or rendered.strip() != reply.strip():
        # The marker itself was altered (e.g. `| upper`): show what the template made of the turn.
        shown = repr(full[len(prompt) :][: len(reply) + 20]) if rendered is None else repr(rendered[:80])
        raise AssistantMaskError(
            f"{name} renders the assistant reply of conversation {index} (turn {turn}) differently from how it was "
            f"given: given {reply[:80]!r}, rendered {shown}; the reply's tokens cannot be masked. Use a template "
            "that renders the reply verbatim, or add {% generation %} tags around it"
        )
    return start, start + length


def rendered_reply_mask(tokenizer: Any, conversation: list[dict[str, str]], index: int = 0) -> MaskedConversation:
    """Token ids of ``conversation`` as ``apply_chat_template`` gives them, and the mask of its assistant replies."""
    if not getattr(tokenizer, "is_fast", False):
        raise AssistantMaskError(
            f"{template_name(tokenizer)}: locating the reply needs a fast tokenizer (character offsets); "
            f"{type(tokenizer).__name__} is not one"
        )
    full = _render(tokenizer, conversation, index)
    spans = [_reply_span(tokenizer, conversation, turn, full, index)
             for turn, message in enumerate(conversation) if message.get("role") == "assistant"]
    encoded = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = encoded["input_ids"], encoded["offset_mapping"]
    special = _special_ids(tokenizer)
    mask = [0] * len(ids)
    for begin, end in spans:
        last = None
        for position, (token_start, token_end) in enumerate(offsets):
            if token_end > begin and token_start < end:
                mask[position] = 1
                last = position
            elif token_start >= end:
                break
        # The end-of-turn: the first special token after the reply, past whitespace-only tokens only.
        position = (last + 1) if last is not None else next((p for p, (s, _) in enumerate(offsets) if s >= end), len(ids))
        pending = []
        while position < len(ids):
            if ids[position] in special:
                for p in pending + [position]:
                    mask[p] = 1
                break
            token_start, token_end = offsets[position]
            if full[token_start:token_end].strip():
                break
            pending.append(position)
            position += 1
    if spans and not any(mask):
        raise AssistantMaskError(f"{template_name(tokenizer)}: conversation {index} has no assistant tokens to train on")
    return MaskedConversation(list(ids), mask)


def tagged_mask(tokenizer: Any, conversation: list[dict[str, str]], index: int = 0) -> MaskedConversation:
    """The mask transformers builds from the template's ``{% generation %}`` tags."""
    try:
        out = tokenizer.apply_chat_template(conversation, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    except Exception as err:
        raise AssistantMaskError(f"{template_name(tokenizer)} cannot render conversation {index}: {err}") from err
    return MaskedConversation(list(out["input_ids"]), list(out["assistant_masks"]))


def assistant_masks(tokenizer: Any, conversations: Sequence[list[dict[str, str]]], method: str | None = None) -> list[MaskedConversation]:
    """Token ids and assistant masks of every conversation, by ``method`` (default: tags when the template has them)."""
    method = method or mask_method(tokenizer)
    build = {GENERATION_TAGS: tagged_mask, RENDERED_REPLY: rendered_reply_mask}[method]
    return [build(tokenizer, conversation, index) for index, conversation in enumerate(conversations)]


def reply_token_masks(tokenizer: Any, conversations: Sequence[list[dict[str, str]]], max_length: int):
    """Token ids of each conversation and its assistant-reply mask, by the same method as training.

    Tagged templates use their ``{% generation %}`` tags; any other template has the reply
    located in its rendering (``assistant_mask``), so template boilerplate such as Qwen3's
    empty ``<think></think>`` block never counts as reply.
    """
    masked = assistant_masks(tokenizer, conversations)
    return [m.input_ids[:max_length] for m in masked], [m.assistant_mask[:max_length] for m in masked]


def reply_batches(ids: list[list[int]], masks: list[list[int]], batch_size: int, pad_id: int, device):
    """Right-padded batches of ``reply_token_masks``'s output: ``input_ids`` and ``attention_mask`` ``[b, s]`` (long)
    and the reply-token mask ``[b, s]`` (bool), on ``device``."""
    import torch

    for begin in range(0, len(ids), batch_size):
        chunk = ids[begin : begin + batch_size]
        width = max(len(x) for x in chunk)
        input_ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
        attention = torch.zeros((len(chunk), width), dtype=torch.long)
        assistant = torch.zeros((len(chunk), width), dtype=torch.bool)
        for row, (tokens, mask) in enumerate(zip(chunk, masks[begin : begin + batch_size])):
            input_ids[row, : len(tokens)] = torch.tensor(tokens)
            attention[row, : len(tokens)] = 1
            assistant[row, : len(tokens)] = torch.tensor(mask, dtype=torch.bool)
        yield input_ids.to(device), attention.to(device), assistant.to(device)
