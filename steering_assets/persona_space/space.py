"""Persona space: PCA of the role vectors at one layer, and each role's place on the assistant axis.

As assistant-axis's ``notebooks/2_pca_analysis.ipynb``: the role vectors at the layer are
mean-centred (their ``MeanScaler``; ``scaling="standard"`` also divides each dimension by its
standard deviation, scikit-learn's ``StandardScaler``) and decomposed with scikit-learn's PCA.
The sign of a principal component is arbitrary; PC1 is oriented so that its cosine with the axis
is not negative (stated in the metadata), so "high PC1" means "assistant-like" as on the axis.
The PCA holds only ``[n_roles, d]`` (one layer), never every layer of every role.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from steering_assets.persona_space.role_vectors import RoleVectorError

SCALINGS = ("mean", "standard")


@dataclass
class PersonaSpace:
    """PCA of ``roles`` at ``layer``: ``variance_explained`` ``[k]`` (ratios), ``scores`` ``[n_roles, k]`` (each
    role's coordinates), ``pc1_axis_cosine``, ``axis_projection`` ``[n_roles]`` (each role vector on the unit axis)."""

    layer: int
    roles: list[str]
    scaling: str
    variance_explained: np.ndarray
    scores: np.ndarray
    components: np.ndarray
    pc1_axis_cosine: float
    pc1_flipped: bool
    axis_projection: np.ndarray
    default_projection: float | None

    def ends(self, component: int, count: int = 3) -> tuple[list[str], list[str]]:
        """The ``count`` roles lowest and highest on principal component ``component`` (0-based)."""
        order = np.argsort(self.scores[:, component])
        return [self.roles[i] for i in order[:count]], [self.roles[i] for i in order[::-1][:count]]

    def ranked_on_axis(self) -> list[tuple[str, float]]:
        """Roles from the most assistant-like (highest projection on the axis) to the least."""
        order = np.argsort(-self.axis_projection)
        return [(self.roles[i], float(self.axis_projection[i])) for i in order]


def persona_pca(roles: Sequence[str], vectors: np.ndarray, axis_row: np.ndarray, layer: int, n_components: int = 5,
                scaling: str = "mean", default_vector: np.ndarray | None = None) -> PersonaSpace:
    """PCA of ``vectors`` ``[n_roles, d]`` (the role vectors at ``layer``) with the axis's row ``axis_row`` ``[d]``.

    Raises ``RoleVectorError`` when there are not more roles than ``n_components`` (centred on their mean,
    n roles span at most n - 1 directions: a further component would be all zeros), or for an unknown ``scaling``.
    """
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    if scaling not in SCALINGS:
        raise RoleVectorError(f"scaling {scaling!r} is not one of {SCALINGS}")
    matrix = np.asarray(vectors, dtype=np.float64)
    if matrix.shape[0] < n_components + 1:
        raise RoleVectorError(f"PCA with {n_components} components needs at least {n_components + 1} role vectors (centred on "
                              f"their mean, n roles span n - 1 directions); {matrix.shape[0]} have been materialised "
                              f"({', '.join(roles) or 'none'}): ask for fewer components (persona_pca's n_components) or "
                              "materialise more roles")
    scaler = StandardScaler(with_std=scaling == "standard")
    scaled = scaler.fit_transform(matrix)
    pca = PCA(n_components=n_components, svd_solver="full")
    scores = pca.fit_transform(scaled)
    components = pca.components_.copy()
    unit_axis = axis_row / max(float(np.linalg.norm(axis_row)), 1e-12)
    cosine = float(components[0] @ unit_axis / max(float(np.linalg.norm(components[0])), 1e-12))
    flipped = cosine < 0
    if flipped:
        components[0], scores[:, 0], cosine = -components[0], -scores[:, 0], -cosine
    default_projection = None if default_vector is None else float(np.asarray(default_vector, dtype=np.float64) @ unit_axis)
    return PersonaSpace(layer, list(roles), scaling, pca.explained_variance_ratio_.astype(float), scores, components,
                        cosine, flipped, matrix @ unit_axis, default_projection)
