"""Readers of the input folders, in the layouts their public writers produce.

Rollouts (assistant-axis and persona-subspace layouts), instruction files, concept-sentence
sets and scenario files. Plain Python over the core layer, so the resources and the discovery
sensors can read them without importing a concept package (docs/architecture.md).
"""
