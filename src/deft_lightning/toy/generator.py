"""Procedural image–caption generator for the toy world.

Each image shows one or two objects described by attributes (shape, colour, pattern, size,
position) over a background; the "web" split pairs images with templated captions that use
synonyms and sometimes omit or misstate an attribute, like alt-text. The downstream ``toy`` domain
draws shapes as labels, with backgrounds, clutter and colour–shape combinations that the web split
never shows, so a pretrained model must generalise rather than recall.

Rendering is vectorised: every object is a signed-distance function evaluated on a pixel grid for
a whole chunk of images at once (loops run only over the handful of shapes, slots and background
kinds), so tens of thousands of 32 px images take seconds. Everything is drawn from one seeded
``numpy.random.Generator``: the same seed gives the same bytes.

This module draws whole splits; the world's parts are one module each: ``vocabulary`` (words and
synonyms), ``domain`` (what a split is drawn from), ``shapes`` (the SDFs), ``scenes`` (attribute
draws), ``render`` (pixels) and ``captions`` (web alt-text).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from deft_lightning.toy.captions import captions_for
from deft_lightning.toy.domain import TOY, WEB, Domain, held_out_colours
from deft_lightning.toy.render import render
from deft_lightning.toy.scenes import sample_scenes
from deft_lightning.toy.vocabulary import (
    BACKGROUND_WORDS,
    BACKGROUNDS,
    COLOUR_NAMES,
    COLOUR_WORDS,
    COLOURS,
    PATTERN_WORDS,
    PATTERNS,
    SHAPE_WORDS,
    SHAPES,
    SIZE_WORDS,
    SIZES,
)

# The world's public names live in the modules above; importing them from here keeps working.
__all__ = [
    "BACKGROUND_WORDS", "BACKGROUNDS", "COLOUR_NAMES", "COLOUR_WORDS", "COLOURS", "GENERATOR_VERSION",
    "PATTERN_WORDS", "PATTERNS", "SHAPE_WORDS", "SHAPES", "SIZE_WORDS", "SIZES", "TOY", "WEB", "Domain",
    "captions_for", "generate_labelled", "generate_web", "held_out_colours", "render", "sample_scenes",
    "with_image_size",
]

# Bump whenever the generated images or captions change, so cached models are retrained.
GENERATOR_VERSION = 1

def _chunks(n: int, size: int):
    for start in range(0, n, size):
        yield start, min(n, start + size)


def generate_web(n: int, seed: int, domain: Domain = WEB, chunk: int = 2048) -> tuple[np.ndarray, list[str]]:
    """``n`` web image–caption pairs: uint8 (n, H, W, 3) images and a list of caption strings."""
    rng = np.random.default_rng([GENERATOR_VERSION, 1, seed])
    images = np.empty((n, domain.image_size, domain.image_size, 3), np.uint8)
    captions: list[str] = []
    for a, b in _chunks(n, chunk):
        scenes = sample_scenes(rng, b - a, domain)
        images[a:b] = render(rng, scenes, domain)
        captions.extend(captions_for(rng, scenes, domain))
    return images, captions


def generate_labelled(
    n: int, seed: int, domain: Domain = TOY, chunk: int = 2048, balanced: bool = True, stream: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` labelled images of the downstream domain: uint8 images and int64 shape labels.

    Labels are the main object's shape (index into :data:`SHAPES`); with ``balanced`` each class
    gets ``n // C`` or one more images, in a shuffled order. ``stream`` separates independent
    draws with the same seed (e.g. train and test splits).
    """
    rng = np.random.default_rng([GENERATOR_VERSION, 2, stream, seed])
    c = len(SHAPES)
    labels = (np.arange(n) % c) if balanced else rng.integers(0, c, n)
    labels = rng.permutation(labels).astype(np.int64)
    images = np.empty((n, domain.image_size, domain.image_size, 3), np.uint8)
    for a, b in _chunks(n, chunk):
        scenes = sample_scenes(rng, b - a, domain, shapes=labels[a:b])
        images[a:b] = render(rng, scenes, domain)
    return images, labels


def with_image_size(domain: Domain, image_size: int) -> Domain:
    """The same domain rendered at another resolution (object sizes scale with it)."""
    return replace(domain, image_size=int(image_size))
