"""Drawing scene attributes (shape, colour, pattern, size, position, background) from a domain."""

from __future__ import annotations

import numpy as np

from deft_lightning.toy.domain import Domain, held_out_colours
from deft_lightning.toy.vocabulary import BACKGROUNDS, COLOUR_NAMES, PATTERNS, SHAPES

def sample_scenes(rng: np.random.Generator, n: int, domain: Domain, shapes: np.ndarray | None = None) -> dict:
    """Draw attributes for ``n`` scenes: arrays with a leading (n,) or (n, 2) object axis.

    ``shapes`` fixes the main object's shape (used for class-balanced labelled splits).
    """
    s = domain.image_size
    n_shapes, n_colours = len(SHAPES), len(COLOUR_NAMES)
    shape = rng.integers(0, n_shapes, size=(n, 2))
    if shapes is not None:
        shape[:, 0] = shapes
    held = np.array([held_out_colours(k) for k in range(n_shapes)])  # (S, 3)
    colour = np.empty((n, 2), np.int64)
    rows = np.arange(n)
    for slot in range(2):
        allowed = np.ones((n, n_colours), bool)
        allowed[rows[:, None], held[shape[:, slot]]] = False
        # a uniform draw among the allowed colours: argmax of random keys restricted to them
        pick_allowed = np.where(allowed, rng.random((n, n_colours)), -1.0).argmax(1)
        pick_held = held[shape[:, slot], rng.integers(0, held.shape[1], n)]
        if not domain.allow_held_out:
            colour[:, slot] = pick_allowed
        elif slot == 0:
            colour[:, slot] = np.where(rng.random(n) < domain.held_out_prob, pick_held, pick_allowed)
        else:
            colour[:, slot] = rng.integers(0, n_colours, n)
    n_obj = np.where(rng.random(n) < domain.two_object_prob, 2, 1)
    pattern = rng.choice(len(PATTERNS), size=(n, 2), p=np.asarray(domain.pattern_probs))
    size = rng.integers(0, 2, size=(n, 2))
    lo = np.where(size == 0, domain.small_radius[0], domain.large_radius[0])
    hi = np.where(size == 0, domain.small_radius[1], domain.large_radius[1])
    radius = (lo + (hi - lo) * rng.random((n, 2))) * s / 32.0
    margin = radius * 0.8
    # centre offset as a fraction of the room left inside the margins (1 = anywhere)
    room = (s / 2 - margin) * domain.max_offset
    cx = s / 2 + room * (2 * rng.random((n, 2)) - 1)
    cy = s / 2 + room * (2 * rng.random((n, 2)) - 1)
    # two objects: small, side by side on the left and right halves (which one is left is random)
    two = np.flatnonzero(n_obj == 2)
    radius[two] = np.minimum(radius[two], 7.0 * s / 32.0)
    side = rng.integers(0, 2, len(two))
    jitter = (2 * rng.random((len(two), 2)) - 1) * s / 32.0
    cx[two, 0] = np.where(side == 0, 0.27, 0.73) * s + jitter[:, 0]
    cx[two, 1] = np.where(side == 0, 0.73, 0.27) * s + jitter[:, 1]
    cy[two] = s / 2 + (2 * rng.random((len(two), 2)) - 1) * 0.2 * s
    angle = np.deg2rad(domain.max_rotation_deg) * (2 * rng.random((n, 2)) - 1)
    opacity = domain.contrast[0] + (domain.contrast[1] - domain.contrast[0]) * rng.random((n, 2))
    background = rng.choice(len(BACKGROUNDS), size=n, p=np.asarray(domain.background_probs))
    return dict(
        n_objects=n_obj, shape=shape, colour=colour, pattern=pattern, size=size, radius=radius,
        cx=cx, cy=cy, angle=angle, opacity=opacity, background=background,
    )
