"""Toy world v2: 40 colour–shape classes with CLIP-on-CIFAR-100 headroom (issue 16).

v1 labels 10 shapes in a shifted domain; the shipped toy CLIP has little headroom there (measured with
:mod:`.properties`: zero-shot 61.4 %, linear probe 70.8 %, clean fine-tuning 73.4 %), and symmetric
noise over 10 classes is far from the paper's 100. v2 labels the main object's *colour and shape*
("a photo of a red circle."): 4 colours x 10 shapes = 40 classes, every word of which the text tower
saw in its web captions, and both attributes are plain to see. Some pairs never occur together in
the web split (v1's held-out pairs: e.g. red circle), so part of zero-shot recognition is compositional.

The scenes are web-like, so the frozen features separate the classes well; the downstream shift is
a global hue rotation (``hue_shift_deg``, 30 deg), which moves every colour off the hues the web
captions named: zero-shot recognition of the colour drops while a probe or a fine-tuned model can
still read it. The same shipped toy CLIP (``deft-toy``) serves both worlds; the measured properties
are recorded in ``toy/weights/deft-toy-clip-s0.toy_v2.json``.

Nothing of v1 changes: the v2 draws use their own seed streams and the same renderer.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from deft_lightning.toy.generator import (
    COLOUR_NAMES,
    GENERATOR_VERSION,
    SHAPES,
    TOY,
    Domain,
    render,
    sample_scenes,
)

WORLD_VERSION = 2
CLASS_COLOURS: tuple[str, ...] = ("red", "green", "blue", "yellow")


def class_names(colours: tuple[str, ...] = CLASS_COLOURS) -> list[str]:
    """``"<colour> <shape>"`` for every colour and shape, colour-major (label = colour * 10 + shape)."""
    return [f"{c} {s}" for c in colours for s in SHAPES]


# The scenes are web-like (the web split's backgrounds, contrast, rotation and noise; one object),
# so the toy CLIP's features separate the 40 classes (linear probe ~90 % with the v1 toy CLIP); the
# v1 downstream shift (unseen backgrounds, fainter objects, clutter) cost ~10 probe points. The hue
# shift then sets zero-shot alone. Measured with the shipped v1 toy CLIP on read_toy(world="toy_v2",
# seed=0), zero-shot / probe: 0 deg 82.3 / 90.5, 20 deg 78.0 / 88.8, 28 deg 67.8 / 89.3, 34 deg
# 56.2 / 89.0; 30 deg puts zero-shot inside CLIP-on-CIFAR-100's range (see toy/weights/*-v2*.json).
V2_SCENES = dataclasses.replace(
    TOY, background_probs=(0.35, 0.25, 0.25, 0.15, 0.0, 0.0), pattern_probs=(0.55, 0.15, 0.15, 0.15),
    held_out_prob=0.0, max_rotation_deg=8.0, max_offset=0.3, contrast=(0.8, 1.0), distractors=(0, 0),
    pixel_noise=0.02,
)
HUE_SHIFT_DEG = 30.0


@dataclass(frozen=True)
class WorldV2:
    """The downstream v2 domain: scene distribution, class colours and the global hue shift."""

    domain: Domain = field(default_factory=lambda: V2_SCENES)
    colours: tuple[str, ...] = CLASS_COLOURS
    hue_shift_deg: float = HUE_SHIFT_DEG

    @property
    def class_names(self) -> list[str]:
        return class_names(self.colours)


V2 = WorldV2()


def hue_rotation_matrix(degrees: float) -> np.ndarray:
    """(3, 3) RGB rotation about the grey axis: keeps brightness and saturation, turns the hue."""
    t = np.deg2rad(degrees)
    c, s = np.cos(t), np.sin(t)
    k = 1.0 / 3.0
    r = np.sqrt(k)
    return np.array([
        [c + (1 - c) * k, k * (1 - c) - r * s, k * (1 - c) + r * s],
        [k * (1 - c) + r * s, c + (1 - c) * k, k * (1 - c) - r * s],
        [k * (1 - c) - r * s, k * (1 - c) + r * s, c + (1 - c) * k],
    ])


def rotate_hue(images: np.ndarray, degrees: float) -> np.ndarray:
    """uint8 images with their hue turned by ``degrees`` (identity at 0)."""
    if degrees == 0:
        return images
    x = images.astype(np.float32) / 255.0
    x = np.clip(x @ hue_rotation_matrix(degrees).T.astype(np.float32), 0, 1)
    return (x * 255 + 0.5).astype(np.uint8)


def generate_labelled_v2(
    n: int, seed: int, world: WorldV2 = V2, chunk: int = 2048, stream: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` class-balanced labelled images of the v2 world (uint8) and their int64 labels.

    The main object's colour and shape are fixed by the label; everything else comes from the domain.
    """
    rng = np.random.default_rng([GENERATOR_VERSION, WORLD_VERSION, 2, stream, seed])
    colour_index = np.array([COLOUR_NAMES.index(c) for c in world.colours])
    n_classes = len(world.colours) * len(SHAPES)
    labels = rng.permutation(np.arange(n) % n_classes).astype(np.int64)
    domain = world.domain
    images = np.empty((n, domain.image_size, domain.image_size, 3), np.uint8)
    for a in range(0, n, chunk):
        b = min(n, a + chunk)
        scenes = sample_scenes(rng, b - a, domain, shapes=labels[a:b] % len(SHAPES))
        scenes["colour"][:, 0] = colour_index[labels[a:b] // len(SHAPES)]
        images[a:b] = rotate_hue(render(rng, scenes, domain), world.hue_shift_deg)
    return images, labels
