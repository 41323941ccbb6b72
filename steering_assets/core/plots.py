"""Small PNG line plots for artifacts and the Dagster UI (matplotlib, no display needed)."""

from __future__ import annotations

import io
from typing import Any, Callable


def line_plot_png(draw: Callable[[Any], None], xlabel: str, ylabel: str, title: str) -> bytes:
    """Call ``draw(axis)`` on a fresh 5x3-inch axis, label it, and return the PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(5, 3), dpi=90)
    try:
        draw(axis)
        axis.set_xlabel(xlabel)
        axis.set_ylabel(ylabel)
        axis.set_title(title, fontsize=9)
        axis.legend(fontsize=7)
        figure.tight_layout()
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")
        return buffer.getvalue()
    finally:
        plt.close(figure)
