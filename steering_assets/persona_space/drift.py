"""Persona drift: each assistant turn of a multi-turn conversation projected on the assistant axis.

Conversation files: a folder of ``*.jsonl`` files, one conversation a line, either a JSON list of
chat messages (``{"role", "content"}``) or an object holding one under ``"messages"`` or
``"conversation"`` (the rollout writers' field), with an optional ``"id"``. The turns after an
optional system turn must alternate user, assistant, user, ... A turn's activation is the mean
residual stream over its tokens at the axis layer (the whole conversation is one forward pass;
the k-th run of reply tokens is the k-th assistant turn), projected on the unit axis: the lower,
the further from the default assistant.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from steering_assets.core.errors import InputError


class ConversationFormatError(InputError, ValueError):
    """A conversation file line that is not an alternating chat."""


@dataclass
class Conversation:
    file: str
    line: int
    id: str
    messages: list[dict[str, str]]

    @property
    def assistant_turns(self) -> int:
        return sum(1 for m in self.messages if m["role"] == "assistant")


@dataclass
class DriftTrajectory:
    conversation: Conversation
    projections: list[float]  # one per assistant turn, on the unit axis
    below: list[int] = field(default_factory=list)  # 1-based assistant turns below the floor


def read_conversations(folder: Path | str) -> list[Conversation]:
    """Every conversation of every ``*.jsonl`` file in ``folder`` (sorted by file name).

    Raises ``ConversationFormatError`` naming the file, line and turn for a line that is not JSON,
    holds no messages, has a message without ``role``/``content`` strings, or whose turns do not
    alternate; ``FileNotFoundError`` for a missing folder or one without ``.jsonl`` files.
    """
    root = Path(folder)
    files = sorted(root.glob("*.jsonl")) if root.is_dir() else []
    if not files:
        raise FileNotFoundError(f"{root}: no conversation files (*.jsonl, one conversation of chat messages a line)")
    conversations = []
    for path in files:
        for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if text.strip():
                conversations.append(_conversation(path, number, text))
    return conversations


def _conversation(path: Path, number: int, text: str) -> Conversation:
    where = f"{path}:{number}"
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise ConversationFormatError(f"{where}: not JSON ({err.msg})") from None
    ident = f"{path.stem}:{number}"
    if isinstance(value, dict):
        ident = str(value.get("id", ident))
        value = value.get("messages", value.get("conversation"))
    if not isinstance(value, list) or not value:
        raise ConversationFormatError(f"{where}: expected a list of chat messages, or an object with 'messages' or 'conversation'")
    messages = []
    for index, message in enumerate(value):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str) or not isinstance(message.get("content"), str):
            raise ConversationFormatError(f"{where}: message {index} must be an object with string 'role' and 'content'")
        messages.append({"role": message["role"], "content": message["content"]})
    _check_alternation(messages, where)
    return Conversation(str(path), number, ident, messages)


def _check_alternation(messages: list[dict[str, str]], where: str) -> None:
    turns = messages[1:] if messages[0]["role"] == "system" else messages
    for index, message in enumerate(turns):
        expected = "user" if index % 2 == 0 else "assistant"
        if message["role"] != expected:
            offset = len(messages) - len(turns)
            raise ConversationFormatError(
                f"{where}: message {index + offset} is {message['role']!r} where {expected!r} was expected: after an optional "
                "system turn the turns must alternate user, assistant, user, ...")
    if not any(m["role"] == "assistant" for m in turns):
        raise ConversationFormatError(f"{where}: no assistant turn to project")


def turn_runs(mask: Sequence[int]) -> list[tuple[int, int]]:
    """``[start, end)`` of each run of ones in a reply-token mask, in order."""
    runs, start = [], None
    for index, value in enumerate(list(mask) + [0]):
        if value and start is None:
            start = index
        elif not value and start is not None:
            runs.append((start, index))
            start = None
    return runs


def turn_projections(model: Any, tokenizer: Any, conversations: Sequence[Conversation], layer: int, unit_axis: np.ndarray,
                     model_name: str = "the target model", max_length: int = 4096,
                     progress: Callable[[int, int], None] | None = None) -> list[list[float]]:
    """Per conversation, each assistant turn's mean activation at block ``layer`` projected on ``unit_axis`` ``[d]``.

    One forward pass per conversation. Raises ``ConversationFormatError`` when the chat template's
    reply mask does not split into one run per assistant turn (or a turn was cut by ``max_length``).
    """
    import torch

    from steering_assets.models.assistant_mask import reply_token_masks
    from steering_assets.models.hooks import input_device
    from steering_assets.models.residual import block_outputs

    unit = torch.as_tensor(unit_axis, dtype=torch.float32)
    out = []
    with torch.no_grad():
        for index, conversation in enumerate(conversations):
            ids, masks = reply_token_masks(tokenizer, [conversation.messages], max_length)
            runs = turn_runs(masks[0])
            if len(runs) != conversation.assistant_turns:
                raise ConversationFormatError(
                    f"{conversation.file}:{conversation.line}: {conversation.assistant_turns} assistant turns but the chat "
                    f"template's reply mask has {len(runs)} runs of reply tokens (a turn is empty or cut at {max_length} tokens)")
            input_ids = torch.tensor([ids[0]], device=input_device(model))
            hidden = block_outputs(model, [layer], input_ids=input_ids)[layer][0].float()
            projections = hidden @ unit.to(hidden.device)
            out.append([float(projections[a:b].mean()) for a, b in runs])
            if progress is not None:
                progress(index + 1, len(conversations))
    return out


def trajectories(conversations: Sequence[Conversation], projections: Sequence[list[float]], floor: float | None) -> list[DriftTrajectory]:
    """Each conversation's trajectory, with the assistant turns whose projection is below ``floor`` (1-based)."""
    return [DriftTrajectory(c, list(p), [i + 1 for i, value in enumerate(p) if floor is not None and value < floor])
            for c, p in zip(conversations, projections)]
