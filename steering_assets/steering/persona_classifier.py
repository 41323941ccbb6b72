"""A sentence-embedding persona classifier: which persona wrote this text?

all-MiniLM-L6-v2 mean-pooled embeddings and a multinomial logistic regression over the
personas' kept responses plus the baseline assistant's answers. Saved as plain arrays
(``.npz``), never pickled.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from steering_assets.core.artifacts import ArtifactResult, ArtifactStore, fingerprint
from steering_assets.formats.rollouts import PersonaKind, PersonaRef
from steering_assets.models.encoder import SentenceEncoder
from steering_assets.personas.materialize import load_training_split
from steering_assets.steering.config import CLASSIFIER_FILE, EVAL_CODE_VERSION
from steering_assets.steering.negatives import answers, kind_negatives, sample, split_print

BASELINE_CLASS = "<baseline>"


class PersonaClassifier:
    def __init__(self, classes: Sequence[str], coef: np.ndarray, intercept: np.ndarray):
        from sklearn.linear_model import LogisticRegression

        self.classes = list(classes)
        self.model = LogisticRegression()
        self.model.classes_ = np.arange(len(self.classes))
        self.model.coef_ = np.asarray(coef)
        self.model.intercept_ = np.asarray(intercept)

    @classmethod
    def fit(cls, texts_by_class: dict[str, Sequence[str]], encoder: SentenceEncoder, seed: int = 0) -> tuple["PersonaClassifier", dict[str, Any]]:
        from sklearn.linear_model import LogisticRegression
        from sklearn.metrics import accuracy_score
        from sklearn.model_selection import train_test_split

        classes = sorted(texts_by_class)
        texts = [t for c in classes for t in texts_by_class[c]]
        labels = np.array([i for i, c in enumerate(classes) for _ in texts_by_class[c]])
        if len(classes) < 2:
            raise ValueError(f"a persona classifier needs at least two classes, got {classes}")
        embeddings = encoder.encode(texts)
        counts = {c: len(texts_by_class[c]) for c in classes}
        # A stratified 20% split needs two examples per class and a test set with room for every
        # class; small persona sets (a few kept rows per trait) fall back to a plain seeded split,
        # which the details name so the accuracy is read as the rough figure it is.
        test_size = max(int(round(0.2 * len(texts))), len(classes))
        stratified = min(counts.values()) >= 2 and test_size <= len(texts) - len(classes)
        if stratified:
            split = train_test_split(embeddings, labels, test_size=test_size, random_state=seed, stratify=labels)
        else:
            split = train_test_split(embeddings, labels, test_size=max(1, int(round(0.2 * len(texts)))), random_state=seed)
        train_x, test_x, train_y, test_y = split
        if len(set(train_y.tolist())) < 2:
            raise ValueError(f"a persona classifier needs at least two classes in its training split; examples per class: {counts}")
        model = LogisticRegression(max_iter=2000, C=10.0).fit(train_x, train_y)
        accuracy = float(accuracy_score(test_y, model.predict(test_x)))
        model = LogisticRegression(max_iter=2000, C=10.0).fit(embeddings, labels)
        details = {
            "held_out_accuracy": accuracy, "held_out_examples": int(len(test_y)), "examples": len(texts), "classes": classes,
            "examples_per_class": counts, "split": "stratified" if stratified else "unstratified (a class has under two examples)",
        }
        return cls(classes, model.coef_, model.intercept_), details

    def probabilities(self, texts: Sequence[str], encoder: SentenceEncoder) -> np.ndarray:
        """``[n_texts, n_classes]`` class probabilities, columns in ``self.classes`` order."""
        return self.model.predict_proba(encoder.encode(texts))

    def save(self, path: Path) -> None:
        np.savez(path, classes=np.array(self.classes), coef=self.model.coef_, intercept=self.model.intercept_)

    @classmethod
    def load(cls, path: Path) -> "PersonaClassifier":
        with np.load(path, allow_pickle=False) as data:
            return cls([str(c) for c in data["classes"]], data["coef"], data["intercept"])


def classifier_folder(store: ArtifactStore, kind: PersonaKind) -> Path:
    return store.folder(kind.name, "persona_classifier")


def materialize_persona_classifier(
    kind: PersonaKind, refs: Sequence[PersonaRef], store: ArtifactStore, encoder: Any, encoder_name: str,
    per_class: int = 80, seed: int = 0,
) -> ArtifactResult:
    """Which persona wrote this? Trained on each persona's training answers and the baselines' answers.

    The baseline class samples ``per_class`` answers from ``kind_negatives`` (baseline files
    and the personas' own baseline rows); raises MissingBaselineError when a source model has neither.
    """
    negatives = kind_negatives(store, refs)
    key = fingerprint({
        "code": EVAL_CODE_VERSION, "splits": {r.partition_key: split_print(store, r) for r in refs},
        "baselines": negatives.prints, "encoder": encoder_name, "per_class": per_class, "seed": seed,
    })
    folder = classifier_folder(store, kind)
    existing = store.current_manifest(folder, key)
    if existing is not None:
        return ArtifactResult(folder, existing, skipped=True)
    texts = {ref.partition_key: sample(answers(load_training_split(store, ref)[0]["messages"].to_list()), per_class, seed) for ref in refs}
    texts = {name: answers for name, answers in texts.items() if answers}
    texts[BASELINE_CLASS] = sample(answers(negatives.conversations), per_class, seed)
    classifier, info = PersonaClassifier.fit(texts, encoder, seed=seed)
    info["baselines"] = negatives.summary(used=len(texts[BASELINE_CLASS]))
    manifest = store.write_artifact(folder, {CLASSIFIER_FILE: lambda p: _save_npz(classifier, p)}, fingerprint_value=key, details=info)
    return ArtifactResult(folder, manifest, skipped=False)


def _save_npz(classifier: PersonaClassifier, path: Path) -> None:
    # np.savez appends ".npz" to names without it; write through a handle to keep the temp name.
    with open(path, "wb") as handle:
        classifier.save(handle)


def load_persona_classifier(store: ArtifactStore, kind: PersonaKind) -> tuple[PersonaClassifier, str]:
    folder = classifier_folder(store, kind)
    manifest = store.load_manifest(folder)
    return PersonaClassifier.load(folder / CLASSIFIER_FILE), manifest["fingerprint"]
