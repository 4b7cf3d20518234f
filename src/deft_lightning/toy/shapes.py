"""The ten shapes as signed-distance functions, vectorised over a whole chunk of images."""

from __future__ import annotations

import numpy as np

from deft_lightning.toy.vocabulary import SHAPES

# Each takes local coordinates (u to the right, v downwards) in units of the object radius and
# returns an approximate signed distance (negative inside) in the same units.


def _box(u, v, hu, hv):
    return np.maximum(np.abs(u) - hu, np.abs(v) - hv)


def _halfplanes(u, v, normals, offsets):
    out = None
    for (nx, ny), off in zip(normals, offsets):
        d = u * nx + v * ny - off
        out = d if out is None else np.maximum(out, d)
    return out


_TRI_NORMALS = [(0.0, 1.0), (np.cos(np.pi / 6), -0.5), (-np.cos(np.pi / 6), -0.5)]


def _triangle(u, v):  # equilateral, apex up, circumradius ~1
    return _halfplanes(u, v - 0.1, _TRI_NORMALS, [0.5, 0.5, 0.5])


def _star(u, v):
    r = np.hypot(u, v)
    theta = np.arctan2(u, -v)  # 0 = pointing up
    frac = (theta * 5 / (2 * np.pi)) % 1.0
    tri = np.abs(frac - 0.5) * 2  # 1 at tips, 0 between them
    return (r - (0.42 + 0.55 * tri)) * 0.7


def _cross(u, v):
    return np.minimum(_box(u, v, 0.9, 0.3), _box(u, v, 0.3, 0.9))


def _ring(u, v):
    return np.abs(np.hypot(u, v) - 0.68) - 0.25


def _diamond(u, v):
    return (np.abs(u) / 0.7 + np.abs(v) - 0.98) * 0.57


def _crescent(u, v):
    outer = np.hypot(u, v) - 0.92
    inner = np.hypot(u - 0.45, v + 0.1) - 0.72
    return np.maximum(outer, -inner)


def _heart(u, v):
    lobes = np.minimum(np.hypot(u - 0.38, v + 0.3), np.hypot(u + 0.38, v + 0.3)) - 0.45
    point = (np.abs(u) + np.abs(v + 0.08) - 0.85) * 0.707
    point = np.maximum(point, -(v + 0.3))  # keep only the lower half of the diamond
    return np.minimum(lobes, point)


_ARROW_HEAD = [(-1.0, 0.0), (0.58, 0.81), (0.58, -0.81)]


def _arrow(u, v):
    shaft = _box(u + 0.35, v, 0.55, 0.18)
    head = _halfplanes(u, v, _ARROW_HEAD, [-0.05, 0.55, 0.55])
    return np.minimum(shaft, head)


SDFS = {
    "circle": lambda u, v: np.hypot(u, v) - 0.9,
    "square": lambda u, v: _box(u, v, 0.75, 0.75),
    "triangle": _triangle,
    "star": _star,
    "cross": _cross,
    "ring": _ring,
    "diamond": _diamond,
    "crescent": _crescent,
    "heart": _heart,
    "arrow": _arrow,
}
assert tuple(SDFS) == SHAPES
