"""Recover the five scene attributes from a 32x32 RGB image by deterministic image analysis.

The reader works in four steps:

1. Background: classify each border pixel to the nearest background palette color and take
   the most common class.
2. Shape color: among pixels whose nearest color (shape palette plus the observed background
   color) is a shape color, take the class with the largest total distance from the
   background, so that blurred edge pixels count less than the interior.
3. Foreground mask: project each pixel onto the segment from the background color to the
   shape color and threshold the projection at one half.
4. Shape, size and position: match the mask against every rasterized (shape, size, center)
   template by intersection over union (IoU). The position is the nominal center closest to
   the best template's center.

On clean generator images the result is exact. Blur and noise such as a VAE decoder adds
move edge pixels only, which the projection and the IoU match tolerate.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..errors import MinorityPromptError
from .distribution import SHAPES, SIZES, SceneAttributes
from .scenes import (
    BACKGROUND_PALETTE,
    IMAGE_SIZE,
    POSITION_CENTERS,
    SHAPE_PALETTE,
    SIZE_DIAMETERS,
    shape_mask,
)

# Template centers cover the generator's centers (9 to 23 pixels) with a 3-pixel margin.
TEMPLATE_CENTER_RANGE = range(6, 27)

_SHAPE_COLOR_NAMES = tuple(SHAPE_PALETTE)
_SHAPE_COLOR_VALUES = np.array([SHAPE_PALETTE[name] for name in _SHAPE_COLOR_NAMES], float)
_BACKGROUND_NAMES = tuple(BACKGROUND_PALETTE)
_BACKGROUND_VALUES = np.array([BACKGROUND_PALETTE[name] for name in _BACKGROUND_NAMES], float)


@dataclass(frozen=True)
class SceneReading:
    """Attributes read from one image, with the IoU of the best shape template.

    A `shape_iou` well below 1 (say under 0.5) means the image shows no clean shape, so its
    attributes are a guess.
    """

    attributes: SceneAttributes
    shape_iou: float


@dataclass(frozen=True)
class _Templates:
    masks: np.ndarray  # (count, IMAGE_SIZE * IMAGE_SIZE) float32 of 0 and 1
    areas: np.ndarray  # (count,)
    shapes: tuple[str, ...]
    sizes: tuple[str, ...]
    centers: np.ndarray  # (count, 2) as (x, y)


@lru_cache(maxsize=1)
def _templates() -> _Templates:
    masks, shapes, sizes, centers = [], [], [], []
    for shape in SHAPES:
        for size in SIZES:
            for center_y in TEMPLATE_CENTER_RANGE:
                for center_x in TEMPLATE_CENTER_RANGE:
                    mask = shape_mask(shape, SIZE_DIAMETERS[size], center_x, center_y)
                    masks.append(mask.reshape(-1))
                    shapes.append(shape)
                    sizes.append(size)
                    centers.append((center_x, center_y))
    stacked = np.array(masks, dtype=np.float32)
    return _Templates(stacked, stacked.sum(axis=1), tuple(shapes), tuple(sizes), np.array(centers))


def _as_rgb_batch(images: np.ndarray) -> np.ndarray:
    """Convert a (N, 32, 32, 3) uint8 array or float array in [0, 1] to float64 on 0-255."""
    array = np.asarray(images)
    if array.ndim != 4 or array.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE, 3):
        raise MinorityPromptError(
            f"Expected images of shape (N, {IMAGE_SIZE}, {IMAGE_SIZE}, 3) in height-width-"
            f"channel order, got {array.shape}; convert a (N, 3, H, W) tensor with "
            ".permute(0, 2, 3, 1)."
        )
    if np.issubdtype(array.dtype, np.floating):
        return np.clip(array.astype(np.float64), 0.0, 1.0) * 255.0
    if array.dtype != np.uint8:
        raise MinorityPromptError(
            f"Expected uint8 images or float images in [0, 1], got dtype {array.dtype}."
        )
    return array.astype(np.float64)


def _nearest(pixels: np.ndarray, palette: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return the index of the nearest palette color for each pixel and the distance to it."""
    distances = np.linalg.norm(pixels[:, None, :] - palette[None, :, :], axis=2)
    indices = distances.argmin(axis=1)
    return indices, distances[np.arange(len(pixels)), indices]


def _border_pixels(image: np.ndarray) -> np.ndarray:
    return np.concatenate([image[0], image[-1], image[1:-1, 0], image[1:-1, -1]])


def _read_background(image: np.ndarray) -> tuple[str, np.ndarray]:
    """Return the background name and the observed background color (median of its pixels)."""
    border = _border_pixels(image)
    labels, _ = _nearest(border, _BACKGROUND_VALUES)
    counts = np.bincount(labels, minlength=len(_BACKGROUND_NAMES))
    label = int(counts.argmax())
    return _BACKGROUND_NAMES[label], np.median(border[labels == label], axis=0)


def _read_color(pixels: np.ndarray, background: np.ndarray) -> tuple[str, np.ndarray]:
    """Return the shape color name and the observed shape color."""
    palette = np.vstack([_SHAPE_COLOR_VALUES, background[None, :]])
    labels, _ = _nearest(pixels, palette)
    is_shape = labels < len(_SHAPE_COLOR_NAMES)
    distance_from_background = np.linalg.norm(pixels - background, axis=1)
    if not is_shape.any():
        # No pixel is closer to a shape color than to the background: use the pixels that
        # differ most from the background.
        is_shape = distance_from_background >= np.quantile(distance_from_background, 0.95)
        labels, _ = _nearest(pixels, _SHAPE_COLOR_VALUES)
    weights = np.bincount(
        labels[is_shape],
        weights=distance_from_background[is_shape],
        minlength=len(palette),
    )[: len(_SHAPE_COLOR_NAMES)]
    label = int(weights.argmax())
    members = is_shape & (labels == label)
    observed = np.median(pixels[members], axis=0) if members.any() else _SHAPE_COLOR_VALUES[label]
    return _SHAPE_COLOR_NAMES[label], observed


def foreground_mask(image: np.ndarray) -> np.ndarray:
    """Return the boolean (32, 32) mask of shape pixels of one image."""
    rgb = _as_rgb_batch(np.asarray(image)[None])[0]
    return _foreground(rgb)[0]


def _foreground(image: np.ndarray) -> tuple[np.ndarray, str, str]:
    pixels = image.reshape(-1, 3)
    background_name, background = _read_background(image)
    color_name, color = _read_color(pixels, background)
    direction = color - background
    squared_length = float(direction @ direction)
    if squared_length < 1e-6:
        direction = _SHAPE_COLOR_VALUES[_SHAPE_COLOR_NAMES.index(color_name)] - background
        squared_length = max(float(direction @ direction), 1e-6)
    projection = (pixels - background) @ direction / squared_length
    mask = (projection > 0.5).reshape(IMAGE_SIZE, IMAGE_SIZE)
    return mask, color_name, background_name


def _nearest_position(center: np.ndarray) -> str:
    names = list(POSITION_CENTERS)
    nominal = np.array([POSITION_CENTERS[name] for name in names], float)
    return names[int(np.linalg.norm(nominal - center, axis=1).argmin())]


def read_scenes(images: np.ndarray | Iterable[np.ndarray]) -> list[SceneReading]:
    """Read the attributes of a batch of images.

    `images` is a (N, 32, 32, 3) array, uint8 on 0-255 or float on [0, 1] (the layout of
    diffusers' `output_type="np"`), or an iterable of (32, 32, 3) arrays or PIL images.
    """
    if not isinstance(images, np.ndarray):
        images = np.stack([np.asarray(image) for image in images])
    rgb = _as_rgb_batch(images)
    templates = _templates()

    masks, colors, backgrounds = [], [], []
    for image in rgb:
        mask, color, background = _foreground(image)
        masks.append(mask.reshape(-1))
        colors.append(color)
        backgrounds.append(background)
    mask_matrix = np.array(masks, dtype=np.float32)

    intersections = mask_matrix @ templates.masks.T
    unions = mask_matrix.sum(axis=1)[:, None] + templates.areas[None, :] - intersections
    ious = intersections / np.maximum(unions, 1.0)
    best = ious.argmax(axis=1)

    readings = []
    for row, index in enumerate(best):
        attributes = SceneAttributes(
            shape=templates.shapes[index],
            color=colors[row],
            size=templates.sizes[index],
            position=_nearest_position(templates.centers[index]),
            background=backgrounds[row],
        )
        readings.append(SceneReading(attributes, float(ious[row, index])))
    return readings


def read_scene(image: np.ndarray) -> SceneReading:
    """Read the attributes of one (32, 32, 3) image; see `read_scenes`."""
    return read_scenes(np.asarray(image)[None])[0]


def read_attributes(image: np.ndarray) -> SceneAttributes:
    """Return the attributes read from one (32, 32, 3) image."""
    return read_scene(image).attributes
