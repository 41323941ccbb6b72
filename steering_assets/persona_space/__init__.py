"""Persona space: role vectors, the assistant axis, PCA of the roles, drift monitoring and activation capping.

Logic modules (no Dagster): ``role_vectors``, ``axis``, ``space``, ``drift``, ``capping``, ``capping_eval``;
``materialize`` / ``materialize_eval`` store them; ``assets``, ``jobs`` and ``definitions`` are the Dagster side.
"""
