"""The offline demo: a user of the product, not part of it (not in the wheel).

Instruction files, settings and a driver that materialises the whole graph on SmolLM2-135M-Instruct
through the product's public functions: ``python -m demo`` (``make demo``).
"""
