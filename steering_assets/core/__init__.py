"""The core layer: artifact storage, errors, JSONL reading, plots, metadata helpers and names.

It imports nothing of ours: every other layer builds on it (docs/architecture.md).
"""
