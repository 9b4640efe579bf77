"""A synthetic long-tailed scene distribution with exact probabilities, and its reader.

Scenes are 32x32 RGB images of one shape on a plain background. Captions name the shape and
some other attributes. The attributes a caption leaves out follow known long-tailed
distributions, so the rarity of a generated sample can be computed exactly with
`exact_probability` after `read_attributes` recovers its attributes.
"""

from .distribution import (
    ATTRIBUTE_NAMES,
    ATTRIBUTE_VALUES,
    BACKGROUNDS,
    COLORS,
    POSITIONS,
    SHAPES,
    SIZES,
    SceneAttributes,
    attribute_marginals,
    caption_text,
    conditional_distribution,
    exact_probability,
    parse_caption,
    training_captions,
    unnamed_attributes,
)
from .reader import SceneReading, read_attributes, read_scene, read_scenes
from .scenes import (
    IMAGE_SIZE,
    Scene,
    render_scene,
    sample_scene,
    sample_scenes,
    sample_scenes_for_caption,
)

__all__ = [
    "ATTRIBUTE_NAMES",
    "ATTRIBUTE_VALUES",
    "BACKGROUNDS",
    "COLORS",
    "IMAGE_SIZE",
    "POSITIONS",
    "SHAPES",
    "SIZES",
    "Scene",
    "SceneAttributes",
    "SceneReading",
    "attribute_marginals",
    "caption_text",
    "conditional_distribution",
    "exact_probability",
    "parse_caption",
    "read_attributes",
    "read_scene",
    "read_scenes",
    "render_scene",
    "sample_scene",
    "sample_scenes",
    "sample_scenes_for_caption",
    "training_captions",
    "unnamed_attributes",
]
