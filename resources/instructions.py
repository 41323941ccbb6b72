"""Instruction files for rollout generation, in assistant-axis's layout (PERSONA_INSTRUCTIONS_ROOT)."""

from pathlib import Path
from typing import Optional

import dagster as dg
from pydantic import Field


class InstructionSource(dg.ConfigurableResource):
    """``{root}/roles/instructions/{role}.json``, ``{root}/traits/instructions/{trait}.json`` and
    ``{root}/extraction_questions.jsonl`` (see ``steering_assets.formats.instructions``)."""

    root: Optional[str] = Field(default=None, description="The instructions folder (env PERSONA_INSTRUCTIONS_ROOT); unset: no generation.")
    model_name: Optional[str] = Field(
        default=None, description="The source-model folder generated rollouts go in, and {model_name} in the instructions "
        "(env PERSONA_ROLLOUT_MODEL_NAME); unset: the persona model's short name.")

    def rollout_model_name(self, display_name: str) -> str:
        from steering_assets.formats.instructions import rollout_model_name

        return rollout_model_name(display_name, self.model_name)

    def folder(self) -> Path:
        return _folder(self.root, "PERSONA_INSTRUCTIONS_ROOT", "a folder holding roles/instructions/, traits/instructions/ "
                       "and extraction_questions.jsonl to generate rollouts")


class ConversationSource(dg.ConfigurableResource):
    """Multi-turn conversations to watch for persona drift (``steering_assets.persona_space.drift``)."""

    root: Optional[str] = Field(default=None, description="Folder of *.jsonl conversations (env PERSONA_CONVERSATIONS_ROOT).")

    def folder(self) -> Path:
        return _folder(self.root, "PERSONA_CONVERSATIONS_ROOT", "a folder of *.jsonl files, one conversation (a JSON list "
                       "of {role, content} messages) a line, to monitor persona drift")


def _folder(root: Optional[str], variable: str, what: str) -> Path:
    """``root`` as an existing folder, else a ``MissingInputError`` naming ``variable`` and what it should point at."""
    from steering_assets.core.errors import MissingInputError

    if not root:
        raise MissingInputError(f"{variable} is not set: point it at {what}")
    folder = Path(root)
    if not folder.is_dir():
        raise MissingInputError(f"{variable} {folder} is not a folder")
    return folder
