"""``models/persona_model``: PERSONA_MODEL may name a .gguf file like a folder; the asset shows what the model is,
its data version is the weights' SHA-256, and every asset that runs the model is downstream of it."""

import dagster as dg

from steering_assets.persona_model.assets import PERSONA_MODEL_KEY, persona_model


def test_a_gguf_path_materialises_with_its_card(smollm2, tmp_path):
    from steering_assets.resources.language_model import LanguageModelResource, ModelSource

    gguf = smollm2.card["source"]["files"][0]
    source = ModelSource(model_name_or_path=gguf)
    assert source.resolved_path() == str(smollm2.folder)
    assert source.identity == f"{gguf}@{smollm2.card['source']['sha256'][:12]}"
    assert source.get_tokenizer().chat_template == smollm2.card["chat_template"]
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize([persona_model], instance=instance, resources={
        "model_source": source, "language_model": LanguageModelResource(source=source, device="cpu")})
    (event,) = result.asset_materializations_for_node("models__persona_model")
    meta = {key: value.value for key, value in event.metadata.items()}
    assert (meta["architecture"], meta["n_layers"], meta["hidden_size"], meta["vocab_size"]) == ("LlamaForCausalLM", 30, 576, 49152)
    assert meta["injected_system_prompt"].startswith("You are a helpful AI assistant named SmolLM")
    assert meta["source_sha256"] == smollm2.card["source"]["sha256"]
    assert "| 29 |" in meta["residual_norms"] and "data:image/png;base64," in meta["residual_norms"]
    record = instance.get_latest_materialization_event(PERSONA_MODEL_KEY)
    assert record.asset_materialization.tags["dagster/data_version"] == smollm2.card["source"]["sha256"]


def test_every_model_asset_is_downstream_of_the_model():
    from steering_assets.definitions import defs

    graph = defs().resolve_asset_graph()
    children = {key.to_user_string() for key in graph.get(PERSONA_MODEL_KEY).child_keys}
    for kind in ("roles", "traits"):
        assert {f"{kind}/persona_dataset", f"{kind}/steering_vector", f"{kind}/persona_activation_vector",
                f"{kind}/steering_eval", f"{kind}/steering_judged_eval"} <= children
    assert {"concepts/sentence_features", "vetting/scenario_responses"} <= children
