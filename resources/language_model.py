"""The target model: where it comes from (tokenizer for datasets) and the loaded, frozen model.

``ModelSource`` is light: persona datasets only need its tokenizer. ``LanguageModelResource``
wraps a ``ModelSource`` and loads the causal LM once per run in ``setup_for_execution``
(every partition of a chunked run shares it) and frees it in teardown.
"""

import functools
import gc
from typing import Any, Optional

import dagster as dg
from pydantic import Field, PrivateAttr

from steering_assets.models import load_causal_lm


@functools.lru_cache(maxsize=4)
def _load_tokenizer(name_or_path: str, revision: Optional[str], local_files_only: bool, trust_remote_code: bool) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(
            name_or_path, revision=revision, local_files_only=local_files_only, trust_remote_code=trust_remote_code
        )
    except OSError as err:
        raise OSError(
            f"could not load the tokenizer of {name_or_path!r} (local_files_only={local_files_only}): {err}. "
            "Set PERSONA_MODEL to a local model folder or a hub id that is in the local cache."
        ) from err


class ModelSource(dg.ConfigurableResource):
    """A causal LM by local path or hub id; persona datasets use its tokenizer and chat template."""

    model_name_or_path: str = Field(description="Local folder or hub id of the target model (env PERSONA_MODEL).")
    revision: Optional[str] = Field(default=None, description="Hub revision (branch, tag or commit).")
    local_files_only: bool = Field(default=False, description="Never reach the hub; use local files only.")
    trust_remote_code: bool = Field(default=False, description="Allow custom code shipped with the model.")

    def get_tokenizer(self) -> Any:
        return _load_tokenizer(self.model_name_or_path, self.revision, self.local_files_only, self.trust_remote_code)


class LanguageModelResource(dg.ConfigurableResource):
    """The frozen causal LM, loaded once per run and shared by every partition of it."""

    source: ModelSource
    device: str = Field(default="auto", description='"auto" (CUDA when present, else CPU), "cpu", "cuda", "cuda:1", ...')
    device_map: Optional[str] = Field(
        default=None,
        description=(
            'Unset: the whole model on `device`. "auto", "balanced", "balanced_low_0" or "sequential": shard the '
            "decoder blocks over every GPU the run sees (CUDA_VISIBLE_DEVICES). Or a JSON object of module -> device. "
            "Weights always load straight onto their device."
        ),
    )
    dtype: str = Field(default="auto", description='"auto" (bfloat16 on CUDA, float32 on CPU), "float32", "bfloat16", "float16".')
    quantization: Optional[str] = Field(
        default=None, description='"8bit" or "4bit" (bitsandbytes, optional: pip install \'steering-assets[quantization]\').'
    )
    attn_implementation: Optional[str] = Field(default=None, description='e.g. "sdpa", "eager", "flash_attention_2".')

    _model: Any = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._model = load_causal_lm(
            self.source.model_name_or_path,
            revision=self.source.revision,
            local_files_only=self.source.local_files_only,
            trust_remote_code=self.source.trust_remote_code,
            device=self.device,
            dtype=self.dtype,
            attn_implementation=self.attn_implementation,
            device_map=self.device_map,
            quantization=self.quantization,
        )
        if context.log:
            placement = getattr(self._model, "hf_device_map", None)
            where = f"sharded over {sorted({str(d) for d in placement.values()})}" if placement and len(set(placement.values())) > 1 else f"on {self._model.device}"
            context.log.info(f"loaded {self.source.model_name_or_path} {where} ({self._model.dtype})")

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        device = getattr(self._model, "device", None)
        self._model = None
        gc.collect()
        if device is not None and device.type == "cuda":
            import torch

            torch.cuda.empty_cache()

    @property
    def model_name(self) -> str:
        return self.source.model_name_or_path

    def get_model(self) -> Any:
        if self._model is None:
            raise RuntimeError("the language model is only available while a run executes (setup_for_execution)")
        return self._model

    def get_tokenizer(self) -> Any:
        return self.source.get_tokenizer()
