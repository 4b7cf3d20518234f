"""Web captions for drawn scenes: templated alt-text with synonyms, omissions and misstatements."""

from __future__ import annotations

import numpy as np

from deft_lightning.toy.domain import Domain
from deft_lightning.toy.vocabulary import (
    BACKGROUND_WORDS,
    BACKGROUNDS,
    COLOUR_NAMES,
    COLOUR_WORDS,
    PATTERN_WORDS,
    PATTERNS,
    SHAPE_WORDS,
    SHAPES,
    SIZE_WORDS,
    SIZES,
)

def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _position_phrase(cx: float, cy: float, s: int) -> str:
    h = "left" if cx < s / 3 else "right" if cx > 2 * s / 3 else ""
    v = "top" if cy < s / 3 else "bottom" if cy > 2 * s / 3 else ""
    if h and v:
        return f"in the {v} {h} corner"
    if h or v:
        return f"on the {h or v}"
    return "in the middle"


def _choose(rng: np.random.Generator, words: tuple[str, ...], main_weight: float = 0.6) -> str:
    """The first (canonical) word with probability ``main_weight``, else a uniform synonym."""
    if len(words) == 1 or rng.random() < main_weight:
        return words[0]
    return words[int(rng.integers(1, len(words)))]


_SINGLE_TEMPLATES = (
    "{np}.",
    "a photo of {np}.",
    "{np} {pos}.",
    "there is {np} {pos}",
    "{np} on a {bg} background",
    "an image of {np}",
    "picture of {np}, {pos}",
    "{np}",
    "my drawing of {np}",
    "{np} seen {pos}",
)
# Alt-text chatter around some captions. It varies caption length, so the text tower's later
# positional embeddings are trained too (prompt learners put class names after 16 context tokens).
_PREFIXES = (
    "look at this:",
    "here we have",
    "stock image -",
    "free clipart, vector icon of",
    "a scan from my old sketchbook, which shows",
    "downloaded from the internet yesterday, this picture has",
    "for sale: poster with",
    "thumbnail 0413, art print, high quality, featuring",
)
_SUFFIXES = (
    "for kids",
    ", made with love",
    "- click to enlarge",
    "from the shapes collection, all rights reserved",
)
_PAIR_TEMPLATES = (
    "{np} and {np2}.",
    "a photo of {np} next to {np2}",
    "{np2} beside {np}",
    "two shapes: {np} and {np2}",
)


def _noun_phrase(rng, domain: Domain, shape: int, colour: int, pattern: int, size: int, shape_noise: float) -> str:
    if rng.random() < shape_noise:
        shape = int(rng.integers(0, len(SHAPES)))
    words = []
    mention = domain.mention
    if rng.random() < mention["size"]:
        words.append(_choose(rng, SIZE_WORDS[SIZES[size]]))
    if rng.random() < mention["colour"]:
        words.append(_choose(rng, COLOUR_WORDS[COLOUR_NAMES[colour]]))
    if PATTERNS[pattern] != "solid" and rng.random() < mention["pattern"] * 2:
        words.append(_choose(rng, PATTERN_WORDS[PATTERNS[pattern]]))
    words.append(_choose(rng, SHAPE_WORDS[SHAPES[shape]]))
    phrase = " ".join(words)
    return f"{_article(phrase)} {phrase}"


def captions_for(rng: np.random.Generator, scenes: dict, domain: Domain) -> list[str]:
    """One templated caption per scene, with synonyms, chatter and occasional omissions or wrong shapes."""
    out = [_add_chatter(rng, c, domain.chatter_prob) for c in _bare_captions(rng, scenes, domain)]
    return out


def _add_chatter(rng: np.random.Generator, caption: str, prob: float) -> str:
    if rng.random() < prob:
        caption = f"{_PREFIXES[int(rng.integers(len(_PREFIXES)))]} {caption}"
    if rng.random() < prob / 2:
        suffix = _SUFFIXES[int(rng.integers(len(_SUFFIXES)))]
        caption = caption.rstrip(".") + ("" if suffix.startswith(",") else " ") + suffix
    return caption


def _bare_captions(rng: np.random.Generator, scenes: dict, domain: Domain) -> list[str]:
    out = []
    s = domain.image_size
    for i in range(len(scenes["shape"])):
        np1 = _noun_phrase(
            rng, domain, scenes["shape"][i, 0], scenes["colour"][i, 0], scenes["pattern"][i, 0],
            scenes["size"][i, 0], domain.caption_shape_noise,
        )
        if scenes["n_objects"][i] == 2:
            np2 = _noun_phrase(
                rng, domain, scenes["shape"][i, 1], scenes["colour"][i, 1], scenes["pattern"][i, 1],
                scenes["size"][i, 1], domain.caption_shape_noise,
            )
            template = _PAIR_TEMPLATES[int(rng.integers(len(_PAIR_TEMPLATES)))]
            out.append(template.format(np=np1, np2=np2))
            continue
        template = _SINGLE_TEMPLATES[int(rng.integers(len(_SINGLE_TEMPLATES)))]
        pos = _position_phrase(scenes["cx"][i, 0], scenes["cy"][i, 0], s)
        bg = _choose(rng, BACKGROUND_WORDS[BACKGROUNDS[scenes["background"][i]]])
        out.append(template.format(np=np1, pos=pos, bg=bg))
    return out
