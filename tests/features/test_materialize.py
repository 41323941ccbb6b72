"""The interpretability stage end to end on the test world: SmolLM2's recorded concept sentences, a tiny random model
and SAEs fitted on its residual stream (tests/world.py)."""

import numpy as np
import pytest

from steering_assets.core.artifacts import ArtifactStore
from steering_assets.features import materialize as pipeline
from steering_assets.formats.concepts import read_concept_sentences
from steering_assets.models.sae import load_sae_set


class HashingEncoder:
    """A cheap stand-in for MiniLM: bag of character trigrams, enough to tell sentences apart."""

    def encode(self, texts):
        out = np.zeros((len(texts), 64), dtype=np.float32)
        for row, text in enumerate(texts):
            for i in range(len(text) - 2):
                out[row, hash(text[i : i + 3]) % 64] += 1
        return out


@pytest.fixture(scope="module")
def store_with_features(demo_workspace, tmp_path_factory):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(demo_workspace.model_path)
    model = AutoModelForCausalLM.from_pretrained(demo_workspace.model_path).eval()
    saes = load_sae_set(demo_workspace.sae_config, d_model=model.config.hidden_size, n_layers=4)
    store = ArtifactStore(tmp_path_factory.mktemp("artifacts"))
    result = pipeline.materialize_sentence_features(
        "humorous", demo_workspace.concepts_root, store, model, tokenizer, HashingEncoder(), saes,
        demo_workspace.sae_config, "tiny", log=lambda _: None,
    )
    return store, result, (model, tokenizer, saes, demo_workspace)


def test_every_stage_writes_its_artifact_and_reruns_are_skipped(store_with_features):
    store, features, (model, tokenizer, saes, workspace) = store_with_features
    count = len(read_concept_sentences(workspace.concepts_root / "humorous.jsonl"))
    assert count >= 20 and features.details["sentences"] == count and features.details["layers"] == [1, 2]
    loaded = pipeline.load_sentence_features(store, "humorous")
    assert [f.sentence_index for f in loaded] == list(range(count))
    top = pipeline.materialize_top_features("humorous", store)
    assert top.details["top"] and all(entry["monotonic"] for entry in top.details["top"])
    graphs = pipeline.materialize_activation_graphs("humorous", store)
    assert all((graphs.folder / name).read_bytes()[:4] == b"\x89PNG" for name in graphs.details["graphs"])
    datasets = pipeline.materialize_classifier_datasets("humorous", store)
    assert len(datasets.details["datasets"]) == 5
    classifiers = pipeline.materialize_trait_classifiers("humorous", store, models=("ridge",), folds=4)
    names = {n.removesuffix(".npz") for n in datasets.details["datasets"]}
    assert {row["dataset"] for row in classifiers.details["results"]} == names
    for name in names:  # a metrics file and the refitted best model (plain arrays, no pickle) per dataset
        assert (classifiers.folder / f"{name}.metrics.json").is_file()
        with np.load(classifiers.folder / f"{name}.best_model.npz", allow_pickle=False) as best:
            assert str(best["model"]) == "ridge" and "coef" in best.files
    again = pipeline.materialize_sentence_features("humorous", workspace.concepts_root, store, model, tokenizer,
                                                   HashingEncoder(), saes, workspace.sae_config, "tiny")
    assert again.skipped and pipeline.materialize_trait_classifiers("humorous", store, models=("ridge",), folds=4).skipped
