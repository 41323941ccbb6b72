"""Feature NPZs written exactly as the original s1 writer writes them (TRACING-TRAIT-EMERGENCE
``s1_compute_all_features/extract_sae_features.py``) build classifier datasets through the asset
logic and the ``classifier-dataset`` command, with layers looked up by id, never by position."""

import shutil

import numpy as np
import pytest

from steering_assets import cli
from steering_assets.core.artifacts import ArtifactStore
from steering_assets.features.datasets import DatasetSpec, DatasetSpecError, build_classifier_dataset, load_dataset
from steering_assets.features.materialize import materialize_classifier_datasets
from steering_assets.features.prefixes import SentenceFeatures

# SAE configurations as in its gemma_scope_16k_configurations.json, a non-contiguous subset:
# hidden_states and activations hold one row per configuration, in this order.
CONFIG_LAYERS, CONFIG_L0S = [3, 7, 12], [59, 69, 82]
HIDDEN_DIM, NUM_FEATURES = 6, 10


def write_s1_npz(output_dir, sentence_idx, sentence, label, rng):
    """One sentence's NPZ with the s1 writer's keys, dtypes, shapes and file name."""
    words = sentence.split()
    fragments = [" ".join(words[: i + 1]) for i in range(len(words))]  # one per token after BOS
    n_fragments = len(fragments)
    embeddings_array = rng.normal(size=(n_fragments, HIDDEN_DIM)).astype(np.float32)
    all_hidden_states, all_activations = [], []
    for layer in CONFIG_LAYERS:
        # Each row is marked with its layer id, so a row taken by position instead of id shows.
        hidden = (layer * 100 + rng.normal(size=(n_fragments, HIDDEN_DIM))).astype(np.float32)
        hidden[-1, 0] += 5 * label
        acts = np.abs(rng.normal(size=(n_fragments, NUM_FEATURES))).astype(np.float32) + layer
        acts[-1, 4] = layer * 10 + label
        all_hidden_states.append(list(hidden))
        all_activations.append(list(acts))
    activations_array = np.array(all_activations)
    hidden_states_array = np.array(all_hidden_states)
    token_positions = np.arange(n_fragments)
    is_final_token = np.zeros(n_fragments, dtype=bool)
    is_final_token[-1] = True
    fragment_lengths = np.array([len(frag.split()) for frag in fragments])
    npz_file = output_dir / f"sentence_{sentence_idx + 1:06d}.npz"
    np.savez_compressed(
        npz_file,
        sentence=sentence,
        concept_strength_label=np.int64(label),  # pandas' int column
        sentence_index=sentence_idx,
        fragments=np.array(fragments),
        token_positions=token_positions,
        is_final_token=is_final_token,
        fragment_lengths=fragment_lengths,
        embeddings=embeddings_array,
        hidden_states=hidden_states_array,
        activations=activations_array,
        layers=np.array(CONFIG_LAYERS),
        average_l0s=np.array(CONFIG_L0S),
        num_features=activations_array.shape[2],
        hidden_dim=hidden_states_array.shape[2],
    )
    return npz_file


@pytest.fixture
def s1_folder(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "dishonesty_features"
    folder.mkdir()
    for index in range(24):
        write_s1_npz(folder, index, f"I told lie number {index} to my boss today", index % 4, rng)
    (folder / "sentence_progress.json").write_text('{"last_completed_sentence": 23}')
    return folder


def load(folder):
    return [SentenceFeatures.load(path) for path in sorted(folder.glob("*.npz"))]


def final_rows(folder, key):
    out = []
    for path in sorted(folder.glob("*.npz")):
        with np.load(path) as data:
            final = int(np.where(data["is_final_token"])[0][0])
            out.append(data[key][:, final] if data[key].ndim == 3 else data[key][final])
    return np.stack(out)


def test_hidden_layers_are_looked_up_by_id(s1_folder):
    features = load(s1_folder)
    hidden = final_rows(s1_folder, "hidden_states")  # [n, configs, d]
    arrays = build_classifier_dataset(features, DatasetSpec("hidden-to-concept", layers="7", normalize="none"))
    assert np.array_equal(arrays["X"], hidden[:, CONFIG_LAYERS.index(7)])
    assert arrays["meta_input_layers"].tolist() == [7]
    both = build_classifier_dataset(features, DatasetSpec("hidden-to-concept", layers="3,12", normalize="none"))
    assert np.array_equal(both["X"], np.concatenate([hidden[:, 0], hidden[:, 2]], axis=1))
    assert both["y"].tolist() == [i % 4 for i in range(24)]
    assert both["meta_sentence_indices"].tolist() == list(range(24))


def test_target_feature_comes_from_the_sae_with_that_layer_id(s1_folder):
    features = load(s1_folder)
    arrays = build_classifier_dataset(features, DatasetSpec("hidden-to-feature", target_layer=12, target_feature=4, normalize="none"))
    assert arrays["y"].tolist() == [120 + i % 4 for i in range(24)]
    assert np.array_equal(arrays["X"], final_rows(s1_folder, "hidden_states")[:, 2])  # input layer defaults to the target
    assert int(arrays["meta_target_layer"]) == 12 and float(arrays["meta_average_l0"]) == 82.0
    embedding = build_classifier_dataset(features, DatasetSpec("embedding-to-feature", target_layer=3, target_feature=4))
    assert embedding["y"].tolist() == [30 + i % 4 for i in range(24)]


@pytest.mark.parametrize(
    "spec, message",
    [
        (DatasetSpec("hidden-to-concept", layers="1"), r"layer 1 is not among the hidden-state layers of the feature NPZs \[3, 7, 12\]"),
        (DatasetSpec("hidden-to-concept", layers="0-2"), r"layer 0 is not among .* \[3, 7, 12\]"),
        (DatasetSpec("embedding-to-feature", target_layer=2, target_feature=0), r"target layer 2 has no SAE; SAE layers are \[3, 7, 12\]"),
    ],
)
def test_a_layer_id_not_in_the_npz_names_the_ids_that_are(s1_folder, spec, message):
    with pytest.raises(DatasetSpecError, match=message):
        build_classifier_dataset(load(s1_folder), spec)


def test_asset_logic_builds_the_default_datasets_from_s1_npzs(s1_folder, tmp_path):
    store = ArtifactStore(tmp_path / "artifacts")
    files = {p.name: (lambda target, p=p: shutil.copyfile(p, target)) for p in sorted(s1_folder.glob("*.npz"))}
    store.write_artifact(store.folder("concepts", "sentence_features", "dishonesty"), files, fingerprint_value="s1")
    top = [{"layer": 12, "feature": 4, "pearson": 0.9}]
    store.write_artifact(store.folder("concepts", "top_features", "dishonesty"), {}, fingerprint_value="t", details={"top": top})
    result = materialize_classifier_datasets("dishonesty", store)
    names = sorted(result.details["datasets"])
    assert "hidden-to-concept__L7__standardize.npz" in names  # the middle layer id, not position 1
    assert "hidden-to-concept__L3_7_12__standardize.npz" in names
    assert "hidden-to-feature__L12__t12f4__standardize.npz" in names
    dataset = load_dataset(result.folder / "hidden-to-concept__L3_7_12__standardize.npz")
    assert dataset["meta_input_layers"].tolist() == [3, 7, 12] and dataset["X"].shape == (24, 3 * HIDDEN_DIM)


def test_classifier_dataset_command_reads_s1_npzs(s1_folder, tmp_path, capsys):
    out = tmp_path / "ds2_h12_to_f4.npz"
    # The original generator's flags: --layer / --input-layer are accepted as --layers.
    assert cli.main(["classifier-dataset", "--strategy", "hidden-to-feature", "--input", str(s1_folder),
                     "--target-layer", "12", "--target-feature", "4", "--normalize", "none", "--output", str(out)]) == 0
    dataset = load_dataset(out)
    assert dataset["y"].tolist() == [120 + i % 4 for i in range(24)]
    assert np.array_equal(dataset["X"], final_rows(s1_folder, "hidden_states")[:, 2])
    concept = tmp_path / "ds3_h7.npz"
    assert cli.main(["classifier-dataset", "--strategy", "hidden-to-concept", "--input", str(s1_folder),
                     "--layer", "7", "--output", str(concept)]) == 0
    assert load_dataset(concept)["meta_input_layers"].tolist() == [7]
    with pytest.raises(SystemExit, match=r"layer 5 is not among the hidden-state layers of the feature NPZs \[3, 7, 12\]"):
        cli.main(["classifier-dataset", "--strategy", "hidden-to-concept", "--input", str(s1_folder),
                  "--layers", "5", "--output", str(tmp_path / "bad.npz")])
    assert not (tmp_path / "bad.npz").exists()


def test_npz_whose_rows_do_not_match_its_layer_ids_is_named(s1_folder, tmp_path):
    path = sorted(s1_folder.glob("*.npz"))[3]
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["layers"] = np.array([3, 7])  # two ids, three hidden-state rows
    arrays["average_l0s"] = np.array([59, 69])
    arrays["activations"] = arrays["activations"][:2]
    np.savez_compressed(path, **arrays)
    with pytest.raises(SystemExit, match=rf"{path.name}: hidden_states has 3 layer rows but 'layers' lists 2 layer ids"):
        cli.main(["classifier-dataset", "--strategy", "hidden-to-concept", "--input", str(s1_folder),
                  "--layers", "3", "--output", str(tmp_path / "x.npz")])


def test_our_own_npzs_follow_the_same_rule(tmp_path):
    """Our writer stores every decoder block's hidden state and SAE activations for some layers:
    hidden layer ids come from hidden_state_layers, SAE ids from layers."""
    rng = np.random.default_rng(1)
    features = []
    for index in range(8):
        hidden = np.stack([np.full((3, 4), 100.0 * layer) for layer in range(4)]) + rng.normal(size=(4, 3, 4))
        acts = np.stack([np.full((3, 5), 10.0 * layer) for layer in (1, 2)])
        f = SentenceFeatures(rng.normal(size=(3, 5)), hidden, acts, np.array([False, False, True]), index % 4, "s", index,
                             np.array([1, 2]), np.array([10.0, 20.0]), np.arange(4))
        f.save(tmp_path / f"sentence_{index:05d}.npz")
        features.append(SentenceFeatures.load(tmp_path / f"sentence_{index:05d}.npz"))
    arrays = build_classifier_dataset(features, DatasetSpec("hidden-to-feature", layers="2", target_layer=2,
                                                            target_feature=0, normalize="none"))
    assert np.allclose(arrays["X"].mean(), 200.0, atol=1.0)  # hidden row of layer 2
    assert np.allclose(arrays["y"], 20.0)  # SAE row 1 holds layer 2
