"""Seeded procedural 32x32 RGB scenes: one flat-colored shape on a flat background.

Every pixel is exactly one palette color, with hard edges and no anti-aliasing, so
`minorityprompt.longtail.reader` can recover the attributes from the image. Besides the five
attributes, each scene has a nuisance offset of -1, 0 or +1 pixel along each axis, drawn
uniformly and independently of everything else. There are 2,160 attribute combinations
and 9 offsets, so 19,440 distinct images in all.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import cache

import numpy as np

from ..errors import MinorityPromptError
from .distribution import (
    ATTRIBUTE_NAMES,
    BACKGROUND_PROBABILITIES,
    NAMING_PROBABILITIES,
    POSITION_PROBABILITIES,
    SHAPE_PROBABILITIES,
    SIZE_PROBABILITIES,
    SceneAttributes,
    caption_for,
    color_probabilities,
    conditional_distribution,
    parse_caption,
)

IMAGE_SIZE = 32

# RGB values on 0-255. The closest pair of shape colors (yellow, orange) is 99 apart
# (Euclidean), the closest background pair (gray, brown) 111, and the closest shape color
# and background (purple, gray) 116.
SHAPE_PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "blue": (30, 70, 230),
    "green": (30, 170, 50),
    "yellow": (245, 220, 40),
    "orange": (255, 130, 0),
    "purple": (150, 40, 200),
}
BACKGROUND_PALETTE: dict[str, tuple[int, int, int]] = {
    "black": (0, 0, 0),
    "white": (255, 255, 255),
    "gray": (128, 128, 128),
    "brown": (110, 70, 35),
}

# Bounding-box width of each size, in pixels.
SIZE_DIAMETERS = {"small": 12.0, "medium": 16.0, "large": 20.0}
# Shape center of each position, as (x, y) in pixels from the top-left corner.
POSITION_CENTERS = {
    "center": (16, 16),
    "left": (10, 16),
    "right": (22, 16),
    "top": (16, 10),
    "bottom": (16, 22),
}
JITTER_OFFSETS = tuple(itertools.product((-1, 0, 1), repeat=2))


@dataclass(frozen=True)
class Scene:
    """One sampled scene with its image, caption and ground-truth attributes.

    `image` is a (32, 32, 3) uint8 array. `named_attributes` lists the attributes that the
    caption names, and `offset` is the (dx, dy) nuisance shift in pixels.
    """

    image: np.ndarray
    caption: str
    attributes: SceneAttributes
    named_attributes: tuple[str, ...]
    offset: tuple[int, int]


def shape_mask(
    shape: str, diameter: float, center_x: float, center_y: float, image_size: int = IMAGE_SIZE
) -> np.ndarray:
    """Rasterize a shape as a boolean (image_size, image_size) mask.

    Pixel (row i, column j) covers the unit square centered at (j + 0.5, i + 0.5). The pixel
    is inside the mask when that center lies inside the shape.
    """
    coordinates = np.arange(image_size) + 0.5
    dx = coordinates[None, :] - center_x
    dy = coordinates[:, None] - center_y
    radius = diameter / 2.0
    if shape == "circle":
        return dx**2 + dy**2 <= radius**2
    if shape == "square":
        return (np.abs(dx) <= radius) & (np.abs(dy) <= radius)
    if shape == "triangle":
        # The apex is at the top and the base at the bottom. The half-width grows linearly
        # with the depth below the apex.
        depth = dy + radius
        return (depth >= 0) & (depth <= 2 * radius) & (np.abs(dx) <= depth / 2)
    if shape == "diamond":
        return np.abs(dx) + np.abs(dy) <= radius
    if shape == "cross":
        arm = radius / 3.0
        inside_box = (np.abs(dx) <= radius) & (np.abs(dy) <= radius)
        return inside_box & ((np.abs(dx) <= arm) | (np.abs(dy) <= arm))
    if shape == "ring":
        squared = dx**2 + dy**2
        return (squared <= radius**2) & (squared >= (radius / 2.0) ** 2)
    raise MinorityPromptError(f"Unknown shape {shape!r}. Use one of the names in SHAPES.")


def render_scene(attributes: SceneAttributes, offset: tuple[int, int] = (0, 0)) -> np.ndarray:
    """Draw the scene as a (32, 32, 3) uint8 RGB array.

    `offset` is the (dx, dy) shift in pixels and must be one of `JITTER_OFFSETS` for the
    image to belong to the training distribution.
    """
    center_x, center_y = POSITION_CENTERS[attributes.position]
    mask = shape_mask(
        attributes.shape,
        SIZE_DIAMETERS[attributes.size],
        center_x + offset[0],
        center_y + offset[1],
    )
    image = np.empty((IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    image[:] = BACKGROUND_PALETTE[attributes.background]
    image[mask] = SHAPE_PALETTE[attributes.color]
    return image


@cache
def _cumulative(probabilities: tuple[tuple[str, float], ...]) -> tuple[tuple[str, ...], np.ndarray]:
    values = tuple(value for value, _ in probabilities)
    cumulative = np.cumsum([probability for _, probability in probabilities])
    return values, cumulative / cumulative[-1]


def _choose(rng: np.random.Generator, probabilities: dict[str, float]) -> str:
    # Inverse-CDF sampling, which is much faster than `rng.choice(..., p=...)` for one draw.
    values, cumulative = _cumulative(tuple(probabilities.items()))
    index = int(np.searchsorted(cumulative, rng.random(), side="right"))
    return values[min(index, len(values) - 1)]


def sample_attributes(rng: np.random.Generator) -> SceneAttributes:
    """Draw one attribute combination from the joint distribution."""
    shape = _choose(rng, SHAPE_PROBABILITIES)
    return SceneAttributes(
        shape=shape,
        color=_choose(rng, color_probabilities(shape)),
        size=_choose(rng, SIZE_PROBABILITIES),
        position=_choose(rng, POSITION_PROBABILITIES),
        background=_choose(rng, BACKGROUND_PROBABILITIES),
    )


def sample_named_attributes(rng: np.random.Generator) -> tuple[str, ...]:
    """Draw which attributes a training caption names: the shape, plus each other attribute
    with its probability in `NAMING_PROBABILITIES`."""
    named = ["shape"]
    for name in ATTRIBUTE_NAMES:
        if name != "shape" and rng.random() < NAMING_PROBABILITIES[name]:
            named.append(name)
    return tuple(named)


def sample_offset(rng: np.random.Generator) -> tuple[int, int]:
    """Draw the nuisance (dx, dy) shift uniformly from `JITTER_OFFSETS`."""
    return JITTER_OFFSETS[rng.integers(len(JITTER_OFFSETS))]


def _generator(seed: int | np.random.Generator) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng(seed)


def sample_scene(seed: int | np.random.Generator) -> Scene:
    """Draw one (image, caption, attributes) triple of the training distribution.

    The same integer seed always gives the same scene.
    """
    rng = _generator(seed)
    attributes = sample_attributes(rng)
    named = sample_named_attributes(rng)
    offset = sample_offset(rng)
    return Scene(
        image=render_scene(attributes, offset),
        caption=caption_for(attributes, named),
        attributes=attributes,
        named_attributes=named,
        offset=offset,
    )


def sample_scenes(count: int, seed: int | np.random.Generator) -> list[Scene]:
    """Draw `count` independent scenes of the training distribution from one seed."""
    if count < 0:
        raise MinorityPromptError(f"count must be >= 0, got {count}.")
    rng = _generator(seed)
    return [sample_scene(rng) for _ in range(count)]


def sample_scenes_for_caption(
    caption: str, count: int, seed: int | np.random.Generator
) -> list[Scene]:
    """Draw `count` scenes from the exact conditional distribution of a caption.

    These are reference samples: what a perfect model would draw for `caption`.
    """
    if count < 0:
        raise MinorityPromptError(f"count must be >= 0, got {count}.")
    rng = _generator(seed)
    distribution = conditional_distribution(caption)
    combinations = list(distribution)
    weights = np.array([distribution[attributes] for attributes in combinations])
    indices = rng.choice(len(combinations), size=count, p=weights / weights.sum())
    named_values = parse_caption(caption)
    named = tuple(name for name in ATTRIBUTE_NAMES if name in named_values)
    scenes = []
    for index in indices:
        attributes = combinations[index]
        offset = sample_offset(rng)
        scenes.append(
            Scene(render_scene(attributes, offset), caption, attributes, named, offset)
        )
    return scenes
