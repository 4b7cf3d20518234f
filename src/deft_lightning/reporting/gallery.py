"""A picture grid of suspected label issues: image, given class, predicted class (true class when known), p_clean.

Drawn with matplotlib's object API on the Agg canvas (no pyplot state, no display needed), so it is
safe in worker processes and headless servers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from deft_lightning.io import atomic_path

THUMBNAIL = 128  # px; tiles are small, and decoding at this size is cheap


@dataclass
class SuspectTile:
    image: Image.Image | None  # None: the file could not be read (drawn as an empty tile)
    index: int
    given_class: str
    predicted_class: str
    p_clean: float
    true_class: str | None = None  # shown when the true labels are known


def save_suspects_grid(path: str | Path, tiles: list[SuspectTile], columns: int = 6, title: str | None = None) -> Path:
    """Write the grid as a PNG (atomically); an empty list gives a one-line "no label issues" image."""
    from matplotlib.figure import Figure

    path = Path(path)
    if not tiles:
        figure = Figure(figsize=(4, 1.2), dpi=100, layout="constrained")
        figure.text(0.5, 0.5, "No label issues found.", ha="center", va="center", fontsize=12)
    else:
        columns = max(1, min(int(columns), len(tiles)))
        rows = int(np.ceil(len(tiles) / columns))
        extra = 0.25 if any(tile.true_class is not None for tile in tiles) else 0.0
        figure = Figure(figsize=(2.3 * columns, (2.75 + extra) * rows + (0.4 if title else 0.0)), dpi=100, layout="constrained")
        axes = np.atleast_1d(figure.subplots(rows, columns, squeeze=False).ravel())
        for axis in axes:
            axis.axis("off")
        for axis, tile in zip(axes, tiles):
            if tile.image is not None:
                thumbnail = tile.image.copy()
                thumbnail.thumbnail((THUMBNAIL, THUMBNAIL))
                axis.imshow(np.asarray(thumbnail))
            axis.set_title(
                f"#{tile.index}  p_clean={tile.p_clean:.3g}\n"
                f"given: {_short(tile.given_class)}\npredicted: {_short(tile.predicted_class)}"
                + (f"\ntrue: {_short(tile.true_class)}" if tile.true_class is not None else ""),
                fontsize=8, loc="left",
            )
        if title:
            figure.suptitle(title, fontsize=11)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")
    return path


def _short(text: str, width: int = 24) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
