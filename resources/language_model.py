"""The target model setting: which tokenizer (and, in later stages, which model) to load.

Loading is cached per process, so every partition of a run (and every run of an
in-process executor) shares one tokenizer.
"""


import functools
from typing import Any, Optional

import dagster as dg
from pydantic import Field


@functools.lru_cache(maxsize=4)
def _load_tokenizer(name_or_path: str, revision: Optional[str], local_files_only: bool, trust_remote_code: bool) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(
            name_or_path,
            revision=revision,
            local_files_only=local_files_only,
            trust_remote_code=trust_remote_code,
        )
    except OSError as err:
        raise OSError(
            f"could not load the tokenizer of {name_or_path!r} (local_files_only={local_files_only}): {err}. "
            "Set PERSONA_MODEL to a local model folder or a hub id that is in the local cache."
        ) from err


class LanguageModelResource(dg.ConfigurableResource):
    """A causal LM by local path or hub id; persona datasets use its tokenizer and chat template."""

    model_name_or_path: str = Field(description="Local folder or hub id of the target model (env PERSONA_MODEL).")
    revision: Optional[str] = Field(default=None, description="Hub revision (branch, tag or commit).")
    local_files_only: bool = Field(default=False, description="Never reach the hub; use local files only.")
    trust_remote_code: bool = Field(default=False, description="Allow custom code shipped with the model.")

    def get_tokenizer(self) -> Any:
        return _load_tokenizer(self.model_name_or_path, self.revision, self.local_files_only, self.trust_remote_code)
