"""Figures for dashboards and result summaries (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def p_clean_histogram(p_clean: np.ndarray, given_labels: np.ndarray, true_labels: np.ndarray | None, bins: int = 25):
    """Histogram of p_clean, split into truly clean and truly noisy samples when the true labels are known.

    A good detector piles the clean ones near 1 and the noisy ones near 0; the 0.5 threshold is drawn.
    """
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(6, 3.6), dpi=100)
    edges = np.linspace(0.0, 1.0, bins + 1)
    p_clean = np.asarray(p_clean, dtype=float)
    if true_labels is None:
        axis.hist(p_clean, bins=edges, color="tab:gray", label=f"all samples ({len(p_clean)})")
    else:
        clean = np.asarray(given_labels) == np.asarray(true_labels)
        axis.hist(p_clean[clean], bins=edges, alpha=0.65, color="tab:blue", label=f"truly clean ({int(clean.sum())})")
        axis.hist(p_clean[~clean], bins=edges, alpha=0.65, color="tab:red", label=f"truly noisy ({int((~clean).sum())})")
    axis.axvline(0.5, color="black", linestyle="--", linewidth=1)
    axis.set_xlabel("p_clean")
    axis.set_ylabel("samples")
    axis.set_title("clean probability of the given label")
    axis.legend(loc="upper center")
    figure.tight_layout()
    return figure


def noise_curves(series: Sequence[dict], path: str | Path, title: str | None = None) -> Path:
    """Test accuracy (best) and detection F1 against the noise ratio, one line per series; saved as PNG.

    Each series is ``{"label": str, "ratio": [...], "accuracy": [... or None], "f1": [... or None]}``
    with values in percent; missing points are skipped.
    """
    plt = _pyplot()
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4), dpi=110)
    for axis, key, ylabel in ((left, "accuracy", "test accuracy, best (%)"), (right, "f1", "detection F1 (%)")):
        drawn = 0
        for item in series:
            points = [(r, v) for r, v in zip(item["ratio"], item[key]) if v is not None]
            if not points:
                continue
            xs, ys = zip(*sorted(points))
            axis.plot(xs, ys, marker="o", label=item["label"])
            drawn += 1
        axis.set_xlabel("noise ratio")
        axis.set_ylabel(ylabel)
        axis.grid(alpha=0.3)
        if drawn:
            axis.legend(fontsize=8)
        else:
            axis.text(0.5, 0.5, "no runs with this metric", ha="center", va="center", transform=axis.transAxes)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    from deft_lightning.io import atomic_path

    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")
    plt.close(figure)
    return path
