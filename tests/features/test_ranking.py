import numpy as np
import pytest

from steering_assets.features.ranking import rank_features, score_features


def test_a_feature_that_rises_with_the_label_ranks_first():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2, 3], 30)
    noise = rng.normal(scale=0.2, size=(120, 5)).clip(min=0)
    activations = noise.copy()
    activations[:, 3] += labels * 1.0  # rises steadily with the concept
    activations[:, 1] += (labels == 3) * 2.0  # jumps only at label 3: monotonic in the mean, less correlated
    activations[:, 4] += (3 - labels) * 1.0  # falls with the concept
    scores = score_features(activations, labels, layer=2)
    top = rank_features(scores, top=3)
    assert [s.feature for s in top][:2] == [3, 1]
    assert top[0].monotonic and top[0].pearson > 0.9 and top[0].gap > 3
    assert top[0].tpr_minus_fpr > 0.9  # every label-3 sentence clears the label-0 95th percentile
    assert not scores[4].monotonic and scores[4].pearson < -0.9
    assert all(s.feature != 4 for s in rank_features(scores, top=5))


def test_ranking_needs_both_ends_of_the_scale():
    with pytest.raises(ValueError, match=r"needs sentences with label 0 and label 3, got labels \[0, 1\]"):
        score_features(np.zeros((4, 2)), np.array([0, 1, 0, 1]), layer=0)
