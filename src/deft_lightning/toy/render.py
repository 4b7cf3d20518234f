"""Rendering drawn scenes to uint8 images: backgrounds, patterned objects, distractors, pixel noise."""

from __future__ import annotations

import numpy as np

from deft_lightning.toy.domain import Domain
from deft_lightning.toy.shapes import SDFS
from deft_lightning.toy.vocabulary import BACKGROUNDS, COLOURS, PATTERNS, SHAPES

def _upsample_matrix(src: int, dst: int) -> np.ndarray:
    """(dst, src) bilinear interpolation weights, so upsampling a grid is two small matmuls."""
    pos = (np.arange(dst) + 0.5) * src / dst - 0.5
    lo = np.clip(np.floor(pos).astype(int), 0, src - 1)
    hi = np.clip(lo + 1, 0, src - 1)
    w = np.clip(pos - lo, 0, 1)
    m = np.zeros((dst, src))
    m[np.arange(dst), lo] += 1 - w
    m[np.arange(dst), hi] += w
    return m


def _jitter_colour(rng: np.random.Generator, index: np.ndarray, amount: float = 0.08) -> np.ndarray:
    base = np.asarray(list(COLOURS.values()))[index]
    return np.clip(base + amount * (2 * rng.random(base.shape) - 1), 0, 1)


def _backgrounds(rng: np.random.Generator, kind: np.ndarray, s: int) -> np.ndarray:
    n = len(kind)
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) + 0.5
    # a base colour per image: mostly muted so coloured objects stand out, sometimes dark
    base = rng.random((n, 3)) * 0.5 + np.where(rng.random((n, 1)) < 0.7, 0.45, 0.0)
    img = np.broadcast_to(base[:, None, None, :], (n, s, s, 3)).astype(np.float32).copy()

    sel = np.flatnonzero(kind == BACKGROUNDS.index("gradient"))
    if len(sel):
        other = rng.random((len(sel), 3))
        theta = rng.random(len(sel)) * 2 * np.pi
        t = (np.cos(theta)[:, None, None] * (xx - s / 2) + np.sin(theta)[:, None, None] * (yy - s / 2)) / s + 0.5
        t = np.clip(t, 0, 1)[..., None]
        img[sel] = img[sel] * (1 - t) + other[:, None, None, :] * t

    sel = np.flatnonzero(kind == BACKGROUNDS.index("blotchy"))
    if len(sel):
        g = 4
        m = _upsample_matrix(g, s)
        grid = rng.random((len(sel), g, g, 3)).astype(np.float32)
        smooth = np.einsum("hi,nijc,wj->nhwc", m, grid, m, optimize=True)
        img[sel] = 0.5 * img[sel] + 0.5 * smooth

    sel = np.flatnonzero(kind == BACKGROUNDS.index("lines"))
    if len(sel):
        for _ in range(4):
            px, py = rng.random((2, len(sel), 1, 1), dtype=np.float32) * s
            th = rng.random((len(sel), 1, 1), dtype=np.float32) * np.float32(np.pi)
            dist = np.abs((xx - px) * np.sin(th) - (yy - py) * np.cos(th))
            a = np.clip(1.0 - dist, 0, 1)[..., None] * (rng.random((len(sel), 1, 1, 1)) < 0.8)
            colour = rng.random((len(sel), 1, 1, 3), dtype=np.float32)
            img[sel] += a * (colour - img[sel])

    sel = np.flatnonzero(kind == BACKGROUNDS.index("confetti"))
    if len(sel):
        specks = rng.random((len(sel), s, s), dtype=np.float32) < 0.12
        colour = rng.random((len(sel), s, s, 3), dtype=np.float32)
        img[sel] = np.where(specks[..., None], colour, img[sel])

    sel = np.flatnonzero(kind == BACKGROUNDS.index("tiles"))
    if len(sel):
        cell = rng.integers(3, 7, len(sel))
        g = (s + 2) // 3 + 1
        tiles = rng.random((len(sel), g, g, 3)).astype(np.float32) * 0.7 + 0.15
        iy = (yy.astype(int)[None] // cell[:, None, None]).clip(0, g - 1)
        ix = (xx.astype(int)[None] // cell[:, None, None]).clip(0, g - 1)
        img[sel] = tiles[np.arange(len(sel))[:, None, None], iy, ix]
    return img


def _pattern_fill(pattern: np.ndarray, colour: np.ndarray, u: np.ndarray, v: np.ndarray, r_px: np.ndarray):
    """Per-pixel fill colour of an object: its colour, alternated with a shade of it for patterns."""
    colour = colour.astype(np.float32)
    shade = np.where(colour.mean(1, keepdims=True) > 0.5, colour * 0.35, np.clip(colour * 0.4 + 0.55, 0, 1))
    fill = np.broadcast_to(colour[:, None, None, :], u.shape + (3,)).copy()
    patterned = np.flatnonzero(pattern != PATTERNS.index("solid"))
    if not len(patterned):
        return fill
    # pattern period in object units, so that one period is ~3.5 px on screen at any object size
    k = (r_px[patterned] / 3.5)[:, None, None]
    uu, vv = u[patterned] * k, v[patterned] * k
    fu, fv = np.floor(uu), np.floor(vv)
    p = pattern[patterned][:, None, None]
    stripes = (fu.astype(np.int32) & 1) == 0
    checks = ((fu + fv).astype(np.int32) & 1) == 0
    dots = (uu - fu - 0.5) ** 2 + (vv - fv - 0.5) ** 2 < 0.09
    on = np.where(p == PATTERNS.index("striped"), stripes, np.where(p == PATTERNS.index("dotted"), dots, checks))
    fill[patterned] = np.where(on[..., None], shade[patterned][:, None, None, :], fill[patterned])
    return fill


def _draw_objects(rng, img: np.ndarray, scenes: dict, slot: int, active: np.ndarray) -> None:
    s = img.shape[1]
    idx = np.flatnonzero(active)
    if not len(idx):
        return
    every = len(idx) == len(img)
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) + np.float32(0.5)
    f32 = lambda a: a[idx, slot].astype(np.float32)[:, None, None]  # noqa: E731
    r = f32(scenes["radius"])
    dx = (xx[None] - f32(scenes["cx"])) / r
    dy = (yy[None] - f32(scenes["cy"])) / r
    angle = f32(scenes["angle"])
    ca, sa = np.cos(angle), np.sin(angle)
    u = ca * dx + sa * dy
    v = ca * dy - sa * dx
    sdf = np.empty_like(u)
    shape = scenes["shape"][idx, slot]
    for k, name in enumerate(SHAPES):
        m = shape == k
        if m.any():
            sdf[m] = SDFS[name](u[m], v[m])
    alpha = (np.clip(0.5 - sdf * r, 0, 1) * f32(scenes["opacity"]))[..., None]
    colour = _jitter_colour(rng, scenes["colour"][idx, slot])
    fill = _pattern_fill(scenes["pattern"][idx, slot], colour, u, v, r[:, 0, 0])
    if every:
        img += alpha * (fill - img)
    else:
        img[idx] += alpha * (fill - img[idx])


def _draw_distractors(rng, img: np.ndarray, counts: np.ndarray) -> None:
    """Small random blobs over the scene: clutter the labelled object must be seen through."""
    n, s = img.shape[:2]
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) + 0.5
    for j in range(int(counts.max(initial=0))):
        px, py = rng.random((2, n, 1, 1), dtype=np.float32) * s
        rad = 1.0 + 1.5 * rng.random((n, 1, 1), dtype=np.float32)
        rad[counts <= j] = -2.0  # images with fewer specks get an invisible one
        a = np.clip(rad - np.sqrt((xx - px) ** 2 + (yy - py) ** 2) + 0.5, 0, 1)[..., None]
        colour = rng.random((n, 1, 1, 3), dtype=np.float32)
        img += a * (colour - img)


def render(rng: np.random.Generator, scenes: dict, domain: Domain) -> np.ndarray:
    """Render scenes to uint8 images (N, H, W, 3)."""
    s = domain.image_size
    img = _backgrounds(rng, scenes["background"], s)
    for slot in range(2):
        _draw_objects(rng, img, scenes, slot, scenes["n_objects"] > slot)
    lo, hi = domain.distractors
    if hi > 0:
        _draw_distractors(rng, img, rng.integers(lo, hi + 1, len(img)))
    if domain.pixel_noise > 0:
        img += rng.standard_normal(img.shape, dtype=np.float32) * np.float32(domain.pixel_noise)
    np.clip(img, 0, 1, out=img)
    return (img * 255 + 0.5).astype(np.uint8)
