import warnings

import numpy as np
import pytest

from steering_assets.features.classifiers import ClassifierDataError, cross_validate, make_model
from steering_assets.features.datasets import (
    DatasetSpec,
    DatasetSpecError,
    build_classifier_dataset,
    load_dataset,
    raw_inputs,
    save_dataset,
)
from steering_assets.features.layers import LayerSpecError
from steering_assets.features.prefixes import SentenceFeatures

N_LAYERS, D, D_EMBED, D_SAE = 4, 6, 5, 10
COMMON = {"X", "y", "meta_strategy", "meta_input_source", "meta_input_layers", "meta_input_dims", "meta_n_samples",
          "meta_sentence_indices", "norm_method", "norm_mean", "norm_std", "norm_min", "norm_max"}
TARGET = {"meta_target_layer", "meta_target_feature", "meta_average_l0"}


def make_features(n=60, seed=0):
    rng = np.random.default_rng(seed)
    features = []
    for index in range(n):
        label = index % 4
        frags = rng.integers(2, 6)
        hidden = rng.normal(size=(N_LAYERS, frags, D))
        hidden[2, -1, 0] += 3 * label  # layer 2 carries the concept
        embeddings = rng.normal(size=(frags, D_EMBED))
        embeddings[-1, 1] += 2 * label
        activations = np.abs(rng.normal(size=(2, frags, D_SAE)))
        activations[1, -1, 7] = label + rng.normal(scale=0.1)
        final = np.zeros(frags, dtype=bool)
        final[-1] = True
        features.append(SentenceFeatures(embeddings, hidden, activations, final, label, f"s{index}", index,
                                         np.array([1, 3]), np.array([12.0, 30.0]), np.arange(N_LAYERS)))
    return features


@pytest.mark.parametrize(
    "spec, width, target",
    [
        (DatasetSpec("embedding-to-concept"), D_EMBED, False),
        (DatasetSpec("hidden-to-concept", layers="2"), D, False),
        (DatasetSpec("hidden-to-concept", layers="0-1,3"), 3 * D, False),
        (DatasetSpec("embedding-to-feature", target_layer=3, target_feature=7), D_EMBED, True),
        (DatasetSpec("hidden-to-feature", layers="1,2", target_layer=3, target_feature=7, normalize="minmax"), 2 * D, True),
    ],
)
def test_each_strategy_has_the_exact_keys_and_shapes(spec, width, target, tmp_path):
    features = make_features()
    arrays = build_classifier_dataset(features, spec)
    assert set(arrays) == COMMON | (TARGET if target else set())
    assert arrays["X"].shape == (60, width) and arrays["y"].shape == (60,)
    assert arrays["meta_sentence_indices"].tolist() == list(range(60))
    if target:
        assert arrays["meta_average_l0"] == pytest.approx(30.0)
        assert arrays["y"][5] == pytest.approx(features[5].activations[1, -1, 7])  # final token only
    save_dataset(arrays, tmp_path / "d.npz")
    loaded = load_dataset(tmp_path / "d.npz")
    assert set(loaded) == set(arrays) and str(loaded["meta_strategy"]) == spec.strategy


def test_normalisations_are_saved_and_invertible():
    features = make_features()
    raw = build_classifier_dataset(features, DatasetSpec("hidden-to-concept", layers="2", normalize="none"))["X"]
    standard = build_classifier_dataset(features, DatasetSpec("hidden-to-concept", layers="2"))
    assert np.allclose(standard["X"].mean(0), 0, atol=1e-5) and np.allclose(standard["X"].std(0), 1, atol=1e-4)
    minmax = build_classifier_dataset(features, DatasetSpec("hidden-to-concept", layers="2", normalize="minmax"))
    assert minmax["X"].min() == pytest.approx(0) and minmax["X"].max() == pytest.approx(1)
    for arrays in (standard, minmax):
        assert np.allclose(raw_inputs(arrays), raw, atol=1e-4)


@pytest.mark.parametrize(
    "spec, error, message",
    [
        (dict(strategy="hidden-to-feature", layers="1", target_layer=3, target_feature=10), DatasetSpecError, r"target feature 10 is beyond the SAE width 10"),
        (dict(strategy="embedding-to-feature", target_layer=2, target_feature=0), DatasetSpecError, r"target layer 2 has no SAE; SAE layers are \[1, 3\]"),
        (dict(strategy="hidden-to-concept", layers="3-1"), LayerSpecError, r"range '3-1' is reversed"),
        (dict(strategy="hidden-to-concept", layers="2-7"), DatasetSpecError, r"layer 4 is not among the hidden-state layers of the feature NPZs \[0, 1, 2, 3\]"),
        (dict(strategy="hidden-to-concept"), DatasetSpecError, r"needs layers"),
        (dict(strategy="hidden-to-feature", target_layer=None, target_feature=1), DatasetSpecError, r"needs layers"),
        (dict(strategy="magic"), DatasetSpecError, r"strategy 'magic' is not one of"),
    ],
)
def test_bad_specs_are_refused(spec, error, message):
    with pytest.raises(error, match=message):
        build_classifier_dataset(make_features(), DatasetSpec(**spec))


def test_npz_that_needs_pickle_is_refused(tmp_path):
    np.savez(tmp_path / "bad.npz", X=np.array([object()], dtype=object))
    with pytest.raises(DatasetSpecError, match="cannot be read without pickle"):
        load_dataset(tmp_path / "bad.npz")


def test_cross_validation_scores_and_fits_normalisation_inside_folds(monkeypatch):
    from sklearn.preprocessing import StandardScaler

    arrays = build_classifier_dataset(make_features(80), DatasetSpec("hidden-to-concept", layers="2"))
    fitted_rows = []
    original = StandardScaler.fit

    def recording_fit(self, x, y=None, **kwargs):
        fitted_rows.append(len(x))
        return original(self, x, y, **kwargs)

    monkeypatch.setattr(StandardScaler, "fit", recording_fit)
    result = cross_validate(arrays, "logistic", folds=5)
    assert fitted_rows == [64] * 5  # each fold's scaler saw its 64 training rows only, never all 80
    assert result["accuracy"] > 0.6 and result["roc_auc"] > 0.8  # chance is 0.25 and 0.5 and result["task"] == "classification"
    regression = cross_validate(build_classifier_dataset(make_features(80), DatasetSpec(
        "embedding-to-feature", target_layer=3, target_feature=7)), "ridge", folds=4)
    assert regression["task"] == "regression" and regression["r2"] > 0.5


def test_a_fit_that_does_not_converge_is_recorded_not_printed(recwarn):
    from steering_assets.features import classifiers

    arrays = build_classifier_dataset(make_features(80), DatasetSpec("hidden-to-concept", layers="2"))
    real_make_model = classifiers.make_model

    def capped(name, task, seed=0):
        return real_make_model(name, task, seed).set_params(max_iter=1)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(classifiers, "make_model", capped)
        result = cross_validate(arrays, "linear_svm", folds=5)
        params = classifiers.fit_best(arrays, "linear_svm")
    assert result["not_converged_folds"] == 5 and not params["converged"]
    assert not [w for w in recwarn if "converge" in str(w.message)]
    assert cross_validate(arrays, "ridge", folds=5)["not_converged_folds"] == 0


def test_only_convergence_warnings_are_recorded_and_others_still_reach_the_user():
    from sklearn.exceptions import ConvergenceWarning

    from steering_assets.features.classifiers import _convergence_recorded

    with pytest.warns(UserWarning, match="unrelated"):
        with _convergence_recorded() as not_converged:
            warnings.warn("unrelated", UserWarning)
            warnings.warn("stopped at max_iter", ConvergenceWarning)
    assert [str(w.message) for w in not_converged] == ["stopped at max_iter"]


def test_single_class_dataset_gets_a_clear_error():
    features = [f for f in make_features(80) if f.concept_strength_label == 2]
    arrays = build_classifier_dataset(features, DatasetSpec("embedding-to-concept"))
    with pytest.raises(ClassifierDataError, match=r"every sentence has label \[2\]; a classifier needs at least two classes"):
        cross_validate(arrays, "logistic")


@pytest.mark.parametrize("name", ["logistic", "ridge", "linear_svm", "mlp"])
def test_factory_builds_every_model(name):
    assert hasattr(make_model(name, "classification"), "fit")
    with pytest.raises(ValueError, match="no regression model named 'logistic'"):
        make_model("logistic", "regression")


def test_cli_builds_the_same_dataset_as_the_library(tmp_path):
    from steering_assets import cli

    features = make_features(40)
    (tmp_path / "features").mkdir()
    for f in features:
        f.save(tmp_path / "features" / f"sentence_{f.sentence_index:05d}.npz")
    output = tmp_path / "out" / "dataset.npz"
    assert cli.main(["classifier-dataset", "--strategy", "hidden-to-feature", "--input", str(tmp_path / "features"),
                     "--layers", "0-1,3", "--target-layer", "3", "--target-feature", "7", "--normalize", "minmax",
                     "--output", str(output)]) == 0
    expected = build_classifier_dataset(features, DatasetSpec("hidden-to-feature", "0-1,3", 3, 7, "minmax"))
    written = load_dataset(output)
    assert set(written) == set(expected) and np.allclose(written["X"], expected["X"]) and np.allclose(written["y"], expected["y"])
    with pytest.raises(SystemExit, match=r"range '3-1' is reversed"):
        cli.main(["classifier-dataset", "--strategy", "hidden-to-concept", "--input", str(tmp_path / "features"),
                  "--layers", "3-1", "--output", str(tmp_path / "x.npz")])
    assert not (tmp_path / "x.npz").exists()
