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
            f"channel order, got {array.shape}. Convert a (N, 3, H, W) tensor with "
            ".permute(0, 2, 3, 1)."
        )
    if np.issubdtype(array.dtype, np.floating):
        return np.clip(array.astype(np.float64), 0.0, 1.0) * 255.0
    if array.dtype != np.uint8:
        raise MinorityPromptError(
            f"Expected uint8 images or float images in [0, 1], got dtype {array.dtype}."
        )
    return array.astype(np.float64)


def _distances(pixels: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """Return Euclidean distances from (..., 3) pixels to each (K, 3) palette color."""
    squared = (
        (pixels**2).sum(axis=-1, keepdims=True)
        - 2.0 * pixels @ palette.T
        + (palette**2).sum(axis=1)
    )
    return np.sqrt(np.maximum(squared, 0.0))


def _border_pixels(images: np.ndarray) -> np.ndarray:
    """Return the (N, 124, 3) border pixels of (N, 32, 32, 3) images."""
    return np.concatenate(
        [images[:, 0], images[:, -1], images[:, 1:-1, 0], images[:, 1:-1, -1]], axis=1
    )


def _masked_mean(pixels: np.ndarray, members: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """Average (N, P, 3) pixels over (N, P) boolean members, or return `fallback` if none."""
    counts = members.sum(axis=1, keepdims=True)
    sums = np.einsum("np,npc->nc", members.astype(np.float64), pixels)
    return np.where(counts > 0, sums / np.maximum(counts, 1), fallback)


def _read_backgrounds(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return each image's background palette index and observed background color."""
    border = _border_pixels(images)
    distances = _distances(border, _BACKGROUND_VALUES)
    labels = distances.argmin(axis=2)
    one_hot = labels[:, :, None] == np.arange(len(_BACKGROUND_NAMES))
    winners = one_hot.sum(axis=1).argmax(axis=1)
    members = labels == winners[:, None]
    return winners, _masked_mean(border, members, _BACKGROUND_VALUES[winners])


def _read_colors(pixels: np.ndarray, backgrounds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return each image's shape color palette index and observed shape color.

    `pixels` is (N, P, 3) and `backgrounds` the (N, 3) observed background colors.
    """
    color_count = len(_SHAPE_COLOR_NAMES)
    to_colors = _distances(pixels, _SHAPE_COLOR_VALUES)
    to_background = np.linalg.norm(pixels - backgrounds[:, None, :], axis=2)
    nearest_color = to_colors.argmin(axis=2)
    is_shape = to_colors.min(axis=2) < to_background
    # Where no pixel is closer to a shape color than to the background, fall back to the 5%
    # of pixels that differ most from the background.
    outliers = to_background >= np.quantile(to_background, 0.95, axis=1, keepdims=True)
    is_shape = np.where(is_shape.any(axis=1, keepdims=True), is_shape, outliers)

    one_hot = (nearest_color[:, :, None] == np.arange(color_count)) & is_shape[:, :, None]
    weights = np.einsum("npk,np->nk", one_hot.astype(np.float64), to_background)
    winners = weights.argmax(axis=1)
    members = is_shape & (nearest_color == winners[:, None])
    return winners, _masked_mean(pixels, members, _SHAPE_COLOR_VALUES[winners])


def _foreground(images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return the (N, 1024) boolean shape masks and the color and background indices."""
    pixels = images.reshape(len(images), -1, 3)
    background_ids, backgrounds = _read_backgrounds(images)
    color_ids, colors = _read_colors(pixels, backgrounds)
    direction = colors - backgrounds
    # A shape color equal to the observed background would divide by zero, so use the palette.
    degenerate = (direction**2).sum(axis=1) < 1e-6
    direction[degenerate] = _SHAPE_COLOR_VALUES[color_ids[degenerate]] - backgrounds[degenerate]
    squared_length = np.maximum((direction**2).sum(axis=1), 1e-6)
    projection = np.einsum("npc,nc->np", pixels - backgrounds[:, None, :], direction)
    masks = projection / squared_length[:, None] > 0.5
    return masks, color_ids, background_ids


def foreground_mask(image: np.ndarray) -> np.ndarray:
    """Return the boolean (32, 32) mask of shape pixels of one image."""
    rgb = _as_rgb_batch(np.asarray(image)[None])
    return _foreground(rgb)[0][0].reshape(IMAGE_SIZE, IMAGE_SIZE)


_POSITION_NAMES = tuple(POSITION_CENTERS)
_POSITION_VALUES = np.array([POSITION_CENTERS[name] for name in _POSITION_NAMES], float)


def read_scenes(images: np.ndarray | Iterable[np.ndarray]) -> list[SceneReading]:
    """Read the attributes of a batch of images.

    `images` is a (N, 32, 32, 3) array, uint8 on 0-255 or float on [0, 1] (the layout of
    diffusers' `output_type="np"`), or an iterable of (32, 32, 3) arrays or PIL images.
    """
    if not isinstance(images, np.ndarray):
        images = np.stack([np.asarray(image) for image in images])
    rgb = _as_rgb_batch(images)
    templates = _templates()
    masks, color_ids, background_ids = _foreground(rgb)
    mask_matrix = masks.astype(np.float32)

    intersections = mask_matrix @ templates.masks.T
    unions = mask_matrix.sum(axis=1)[:, None] + templates.areas[None, :] - intersections
    ious = intersections / np.maximum(unions, 1.0)
    best = ious.argmax(axis=1)
    position_ids = _distances(templates.centers[best].astype(np.float64), _POSITION_VALUES)
    position_ids = position_ids.argmin(axis=1)

    readings = []
    for row, index in enumerate(best):
        attributes = SceneAttributes(
            shape=templates.shapes[index],
            color=_SHAPE_COLOR_NAMES[color_ids[row]],
            size=templates.sizes[index],
            position=_POSITION_NAMES[position_ids[row]],
            background=_BACKGROUND_NAMES[background_ids[row]],
        )
        readings.append(SceneReading(attributes, float(ious[row, index])))
    return readings


def read_scene(image: np.ndarray) -> SceneReading:
    """Read the attributes of one (32, 32, 3) image, as `read_scenes` does."""
    return read_scenes(np.asarray(image)[None])[0]


def read_attributes(image: np.ndarray) -> SceneAttributes:
    """Return the attributes read from one (32, 32, 3) image."""
    return read_scene(image).attributes
