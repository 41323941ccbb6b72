"""Classifiers on classifier datasets: a factory, cross-validation without leakage, metrics.

Labels (concept strength) are classified; SAE feature activations are regressed. The
normalisation the dataset was built with is re-fitted inside every fold, so no fold
sees statistics of its test rows.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from typing import Any, Iterator

import numpy as np

from steering_assets.core.errors import InputError
from steering_assets.features.datasets import raw_inputs

MODELS = ("logistic", "ridge", "linear_svm", "mlp")
# Part of the trait-classifier fingerprint: bump when an estimator's settings change.
MODELS_VERSION = "2"


class ClassifierDataError(InputError, ValueError):
    """A dataset the chosen classifier cannot learn from."""


def _scaler(method: str):
    from sklearn.preprocessing import FunctionTransformer, MinMaxScaler, StandardScaler

    return {"standardize": StandardScaler(), "minmax": MinMaxScaler()}.get(method, FunctionTransformer())


def make_model(name: str, task: str, seed: int = 0):
    """An sklearn estimator for ``task`` "classification" or "regression"."""
    from sklearn.linear_model import LogisticRegression, Ridge, RidgeClassifier
    from sklearn.neural_network import MLPClassifier, MLPRegressor
    from sklearn.svm import LinearSVC, LinearSVR

    table = {
        ("logistic", "classification"): lambda: LogisticRegression(max_iter=2000),
        ("ridge", "classification"): lambda: RidgeClassifier(),
        ("ridge", "regression"): lambda: Ridge(),
        # Primal solvers (squared losses): on a few hundred standardised, nearly separable rows
        # the dual solvers often stop at max_iter unconverged and take twice as long.
        ("linear_svm", "classification"): lambda: LinearSVC(dual=False, random_state=seed, max_iter=5000),
        ("linear_svm", "regression"): lambda: LinearSVR(dual=False, loss="squared_epsilon_insensitive", random_state=seed, max_iter=5000),
        ("mlp", "classification"): lambda: MLPClassifier(hidden_layer_sizes=(64,), max_iter=500, random_state=seed),
        ("mlp", "regression"): lambda: MLPRegressor(hidden_layer_sizes=(64,), max_iter=500, random_state=seed),
    }
    if (name, task) not in table:
        options = sorted(n for n, t in table if t == task)
        raise ValueError(f"no {task} model named {name!r}; choose one of {options}")
    return table[(name, task)]()


@contextmanager
def _convergence_recorded() -> Iterator[list]:
    """Collect sklearn's ConvergenceWarnings instead of printing them: they become a result field.

    Any other warning raised inside is passed on unchanged once the block ends.
    """
    from sklearn.exceptions import ConvergenceWarning

    not_converged: list[warnings.WarningMessage] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        yield not_converged
    for warning in caught:
        if issubclass(warning.category, ConvergenceWarning):
            not_converged.append(warning)
        else:
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)


def models_for(task: str) -> tuple[str, ...]:
    """Model names that handle ``task`` (logistic regression only classifies)."""
    return tuple(name for name in MODELS if not (name == "logistic" and task == "regression"))


def task_of(dataset: dict[str, np.ndarray]) -> str:
    return "classification" if str(dataset["meta_strategy"]).endswith("concept") else "regression"


def cross_validate(dataset: dict[str, np.ndarray], model_name: str, folds: int = 5, seed: int = 0) -> dict[str, Any]:
    """Stratified (classification) or plain (regression) k-fold CV; metrics averaged over folds."""
    from sklearn.metrics import accuracy_score, f1_score, mean_squared_error, r2_score, roc_auc_score
    from sklearn.model_selection import KFold, StratifiedKFold
    from sklearn.pipeline import make_pipeline

    task = task_of(dataset)
    x, y = raw_inputs(dataset), dataset["y"]
    method = str(dataset["norm_method"])
    if task == "classification":
        classes, counts = np.unique(y, return_counts=True)
        if len(classes) < 2:
            raise ClassifierDataError(
                f"{dataset['meta_strategy']}: every sentence has label {classes.tolist()}; a classifier needs at least two classes"
            )
        if counts.min() < folds:
            raise ClassifierDataError(
                f"{dataset['meta_strategy']}: label {classes[counts.argmin()]} has {counts.min()} sentences, fewer than {folds} folds"
            )
        splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    else:
        if np.ptp(y) == 0:
            raise ClassifierDataError(f"{dataset['meta_strategy']}: the target feature is constant; nothing to regress")
        splitter = KFold(n_splits=folds, shuffle=True, random_state=seed)
    per_fold: list[dict[str, float]] = []
    not_converged = 0
    for train, test in splitter.split(x, y):
        with _convergence_recorded() as caught:
            pipeline = make_pipeline(_scaler(method), make_model(model_name, task, seed)).fit(x[train], y[train])
        not_converged += bool(caught)
        predicted = pipeline.predict(x[test])
        if task == "classification":
            metrics = {"accuracy": accuracy_score(y[test], predicted), "f1": f1_score(y[test], predicted, average="macro")}
            if hasattr(pipeline, "predict_proba") and len(np.unique(y[test])) == len(np.unique(y)):
                scores = pipeline.predict_proba(x[test])
                metrics["roc_auc"] = (roc_auc_score(y[test], scores[:, 1]) if scores.shape[1] == 2
                                      else roc_auc_score(y[test], scores, multi_class="ovr"))
        else:
            metrics = {"r2": r2_score(y[test], predicted), "mse": mean_squared_error(y[test], predicted)}
        per_fold.append({k: float(v) for k, v in metrics.items()})
    keys = sorted({k for fold in per_fold for k in fold})
    return {
        "model": model_name, "task": task, "folds": folds, "not_converged_folds": not_converged,
        **{k: float(np.mean([f[k] for f in per_fold if k in f])) for k in keys},
        **{f"{k}_std": float(np.std([f[k] for f in per_fold if k in f])) for k in keys},
    }


def fit_best(dataset: dict[str, np.ndarray], model_name: str, seed: int = 0) -> dict[str, np.ndarray]:
    """Refit ``model_name`` (with its normaliser) on the whole dataset; its parameters as plain arrays."""
    from sklearn.pipeline import make_pipeline

    task = task_of(dataset)
    pipeline = make_pipeline(_scaler(str(dataset["norm_method"])), make_model(model_name, task, seed))
    with _convergence_recorded() as caught:
        pipeline.fit(raw_inputs(dataset), dataset["y"])
    scaler, estimator = pipeline[0], pipeline[-1]
    arrays: dict[str, np.ndarray] = {"model": np.str_(model_name), "task": np.str_(task), "converged": np.bool_(not caught)}
    for name in ("mean_", "scale_", "data_min_", "data_range_"):
        if hasattr(scaler, name):
            arrays[f"scaler_{name.rstrip('_')}"] = np.asarray(getattr(scaler, name))
    if hasattr(estimator, "coefs_"):  # MLP: one weight matrix and bias per layer
        for index, (weights, bias) in enumerate(zip(estimator.coefs_, estimator.intercepts_)):
            arrays[f"coef_{index}"], arrays[f"intercept_{index}"] = weights, bias
    else:
        arrays["coef"], arrays["intercept"] = np.asarray(estimator.coef_), np.atleast_1d(estimator.intercept_)
    if hasattr(estimator, "classes_"):
        arrays["classes"] = np.asarray(estimator.classes_)
    return arrays
