"""The target model: where it comes from (tokenizer for datasets) and the loaded, frozen model.

``ModelSource`` is light: persona datasets only need its tokenizer. It names a Hugging Face
folder, a hub id, or a GGUF (a ``.gguf`` file, a split GGUF's parts, ``package:NAME``), which
is converted once into the shared model cache (``steering_assets.models.pretrained``) and loaded
from there. ``LanguageModelResource`` wraps a ``ModelSource`` and loads the causal LM once per
run in ``setup_for_execution`` (every partition of a chunked run shares it) and frees it in
teardown.
"""

import functools
import gc
from typing import Any, Callable, Optional

import dagster as dg
from pydantic import Field, PrivateAttr

from steering_assets.models.loading import load_causal_lm
from steering_assets.models.pretrained import gguf_sha256, is_gguf_source, locate_gguf, resolve_model


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
    """A causal LM by local folder, hub id or GGUF; persona datasets use its tokenizer and chat template."""

    model_name_or_path: str = Field(
        description="Local folder, hub id, .gguf file (or a split GGUF's parts) or package:NAME of the target model (env PERSONA_MODEL)."
    )
    revision: Optional[str] = Field(default=None, description="Hub revision (branch, tag or commit).")
    local_files_only: bool = Field(default=False, description="Never reach the hub; use local files only.")
    trust_remote_code: bool = Field(default=False, description="Allow custom code shipped with the model.")

    def resolved_path(self, log: Optional[Callable[[str], None]] = None) -> str:
        """The folder or hub id transformers loads: for a GGUF, its converted folder (converted on first use)."""
        return resolve_model(self.model_name_or_path, log=log)

    @property
    def identity(self) -> str:
        """The name artifacts record and are keyed by: ``model_name_or_path``, plus the GGUF's SHA-256 prefix
        for a GGUF source, so that vectors made from other weights under the same name are never reused."""
        if is_gguf_source(self.model_name_or_path):
            return f"{self.model_name_or_path}@{gguf_sha256(locate_gguf(self.model_name_or_path))[:12]}"
        return self.model_name_or_path

    @property
    def display_name(self) -> str:
        """A short name for rollout folders and ``{model_name}``: a GGUF's file stem, a folder's name, a hub id's last part."""
        import re
        from pathlib import Path

        spec = self.model_name_or_path
        if is_gguf_source(spec):
            name = locate_gguf(spec).file_name.removesuffix(".gguf")
        else:
            name = Path(spec.rstrip("/")).name
        return re.sub(r"[^A-Za-z0-9_.+-]+", "-", name).strip("-.") or "model"

    def get_tokenizer(self) -> Any:
        return _load_tokenizer(self.resolved_path(), self.revision, self.local_files_only, self.trust_remote_code)


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
        log = context.log.info if context.log else None
        self._model = load_causal_lm(
            self.source.resolved_path(log=log),
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
        """The model's identity in artifacts and fingerprints (``ModelSource.identity``)."""
        return self.source.identity

    def get_model(self) -> Any:
        if self._model is None:
            raise RuntimeError("the language model is only available while a run executes (setup_for_execution)")
        return self._model

    def get_tokenizer(self) -> Any:
        return self.source.get_tokenizer()
