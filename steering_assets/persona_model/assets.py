"""The persona model as an asset: the weights every model-using asset was made with.

``persona_model`` materialises ``PERSONA_MODEL`` (a GGUF is converted once into the shared
model cache; a Hugging Face folder or hub id is used as it is) and shows what the model is:
architecture, blocks, hidden size, vocabulary, chat template and the system prompt it injects,
and the typical residual-stream norm of every block, plotted. Its data version is the
weights' identity (the GGUF's SHA-256, or a folder's file stamp), so every dependant made
with other weights shows as stale, and lineage says which weights made which vector.
"""


from pathlib import Path

import dagster as dg

from steering_assets.core.metadata import md_table, png_markdown
from steering_assets.resources.language_model import LanguageModelResource, ModelSource

PERSONA_MODEL_KEY = dg.AssetKey(["models", "persona_model"])
GROUP = "models"


def residual_norm_plot(norms: "list[float]", title: str) -> bytes:
    from steering_assets.core.plots import line_plot_png

    def draw(axis) -> None:
        axis.plot(range(len(norms)), norms, marker="o", markersize=3, label="median L2 norm")
        axis.set_yscale("log")

    return line_plot_png(draw, "layer (decoder block output)", "residual-stream norm", title)


def card_metadata(card: dict, folder: str) -> dict:
    """Dagster metadata of a model card (``steering_assets.models.pretrained.describe_model`` plus ``source``)."""
    norms = card["residual_norms"]
    template = card.get("chat_template")
    injected = card.get("injected_system_prompt")
    metadata = {
        "architecture": card["architecture"],
        "model_type": card.get("model_type") or "",
        "n_layers": card["n_layers"],
        "hidden_size": card["hidden_size"],
        "vocab_size": card["vocab_size"],
        "n_parameters": card["n_parameters"],
        "folder": dg.MetadataValue.path(folder),
        "chat_template": dg.MetadataValue.md(f"```jinja\n{template}\n```" if template else "(none: a base model; prompts are plain text)"),
        "injected_system_prompt": injected if injected else "(none)",
        "residual_norms": dg.MetadataValue.md(
            md_table(["layer", "median norm"], [(layer, f"{norm:.1f}") for layer, norm in enumerate(norms)])
            + "\n\n" + png_markdown(residual_norm_plot(norms, f"{card['architecture']}: residual stream per block"), "residual norms")
        ),
    }
    source = card.get("source")
    if source:
        metadata["source_sha256"] = source["sha256"]
        metadata["source_files"] = dg.MetadataValue.md("\n".join(f"- `{f}`" for f in source["files"]))
        metadata["source_bytes"] = source["bytes"]
    return metadata


@dg.asset(
    key=PERSONA_MODEL_KEY, group_name=GROUP, kinds={"pytorch", "safetensors"}, code_version="1",
    description=(
        "The persona model (PERSONA_MODEL): a GGUF file, split GGUF or package:NAME converted once into the shared "
        "model cache (PERSONA_MODEL_CACHE) as float32 safetensors, or a Hugging Face folder used as it is. Metadata: "
        "architecture, blocks, hidden size, vocabulary, chat template and injected system prompt, residual-stream "
        "norm per block. Every asset that runs the model depends on it."
    ),
)
def persona_model(context: dg.AssetExecutionContext, model_source: ModelSource,
                  language_model: LanguageModelResource) -> dg.MaterializeResult:
    from steering_assets.models.loading import local_model_identity
    from steering_assets.models.pretrained import describe_model, read_card

    folder = model_source.resolved_path(log=context.log.info)
    card = read_card(Path(folder)) if Path(folder).is_dir() else None
    if card is None:  # a Hugging Face folder or hub id: describe the loaded model
        card = describe_model(language_model.get_model(), language_model.get_tokenizer())
        version = local_model_identity(folder)
    else:
        version = card["source"]["sha256"]
    context.log.info(
        f"{model_source.model_name_or_path}: {card['architecture']}, {card['n_layers']} blocks, hidden {card['hidden_size']}, "
        f"vocabulary {card['vocab_size']}; injected system prompt: {card.get('injected_system_prompt')!r}"
    )
    return dg.MaterializeResult(metadata=card_metadata(card, folder), data_version=dg.DataVersion(version[:64]))


MODEL_ASSETS = [persona_model]
