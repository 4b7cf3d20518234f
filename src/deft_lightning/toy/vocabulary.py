"""The toy world's words: shapes, colours, patterns, sizes and backgrounds, each with the caption
synonyms the web split uses (the first synonym is the class name used downstream)."""

from __future__ import annotations

SHAPES: tuple[str, ...] = (
    "circle", "square", "triangle", "star", "cross", "ring", "diamond", "crescent", "heart", "arrow",
)
# Caption synonyms; the first entry is the class name used downstream and appears most often.
SHAPE_WORDS: dict[str, tuple[str, ...]] = {
    "circle": ("circle", "disc", "round dot"),
    "square": ("square", "box", "block"),
    "triangle": ("triangle", "wedge"),
    "star": ("star", "starburst"),
    "cross": ("cross", "plus sign", "plus"),
    "ring": ("ring", "donut", "hoop"),
    "diamond": ("diamond", "rhombus", "lozenge"),
    "crescent": ("crescent", "moon", "crescent moon"),
    "heart": ("heart", "love heart"),
    "arrow": ("arrow", "pointer"),
}
COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.85, 0.10, 0.10),
    "green": (0.10, 0.65, 0.15),
    "blue": (0.10, 0.25, 0.90),
    "yellow": (0.95, 0.90, 0.10),
    "orange": (0.98, 0.55, 0.05),
    "purple": (0.55, 0.15, 0.70),
    "pink": (0.98, 0.55, 0.75),
    "cyan": (0.10, 0.85, 0.90),
    "brown": (0.50, 0.30, 0.12),
    "white": (0.97, 0.97, 0.97),
    "black": (0.05, 0.05, 0.05),
    "grey": (0.50, 0.50, 0.50),
}
COLOUR_NAMES: tuple[str, ...] = tuple(COLOURS)
COLOUR_WORDS: dict[str, tuple[str, ...]] = {
    "red": ("red", "crimson", "scarlet"),
    "green": ("green", "emerald"),
    "blue": ("blue", "navy"),
    "yellow": ("yellow", "golden"),
    "orange": ("orange", "tangerine"),
    "purple": ("purple", "violet"),
    "pink": ("pink", "rose"),
    "cyan": ("cyan", "turquoise", "aqua"),
    "brown": ("brown", "chocolate"),
    "white": ("white", "snowy"),
    "black": ("black", "dark"),
    "grey": ("grey", "gray", "silver"),
}
PATTERNS: tuple[str, ...] = ("solid", "striped", "dotted", "checkered")
PATTERN_WORDS: dict[str, tuple[str, ...]] = {
    "solid": ("solid", "plain", "filled"),
    "striped": ("striped", "stripy", "lined"),
    "dotted": ("dotted", "spotted", "polka dot"),
    "checkered": ("checkered", "checked", "chequered"),
}
SIZES: tuple[str, ...] = ("small", "large")
SIZE_WORDS: dict[str, tuple[str, ...]] = {
    "small": ("small", "tiny", "little"),
    "large": ("large", "big", "huge"),
}
# Background kinds. The web split uses the first four; "confetti" and "tiles" are downstream-only.
BACKGROUNDS: tuple[str, ...] = ("plain", "gradient", "blotchy", "lines", "confetti", "tiles")
BACKGROUND_WORDS: dict[str, tuple[str, ...]] = {
    "plain": ("plain", "clean", "simple"),
    "gradient": ("gradient", "fading", "shaded"),
    "blotchy": ("blotchy", "mottled", "cloudy"),
    "lines": ("scribbled", "lined", "messy"),
    "confetti": ("confetti", "speckled"),
    "tiles": ("tiled", "mosaic"),
}
