"""Attribute vocabulary, captions and exact probabilities of the long-tailed scene distribution.

A scene has five attributes. Their joint distribution is

    P(shape, color, size, position, background)
        = P(shape) * P(color | shape) * P(size) * P(position) * P(background).

A training caption always names the shape and names each other attribute independently of
the attribute values (see `NAMING_PROBABILITIES`). Because the choice of what to name does not
depend on the values, the images that carry a given caption follow the joint distribution
conditioned on the named values. `conditional_distribution` computes that law exactly by
enumerating all 2,160 attribute combinations.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

from ..errors import MinorityPromptError

SHAPES = ("circle", "square", "triangle", "diamond", "cross", "ring")
COLORS = ("red", "blue", "green", "yellow", "orange", "purple")
SIZES = ("small", "medium", "large")
POSITIONS = ("center", "left", "right", "top", "bottom")
BACKGROUNDS = ("black", "white", "gray", "brown")

ATTRIBUTE_VALUES: dict[str, tuple[str, ...]] = {
    "shape": SHAPES,
    "color": COLORS,
    "size": SIZES,
    "position": POSITIONS,
    "background": BACKGROUNDS,
}
ATTRIBUTE_NAMES = tuple(ATTRIBUTE_VALUES)

# P(color | shape): shape i takes COLORS rotated by i with these weights, so each color is
# the most common one for exactly one shape and the rarest one (1%) for another.
COLOR_WEIGHTS_BY_RANK = (0.60, 0.25, 0.08, 0.04, 0.02, 0.01)
SHAPE_PROBABILITIES = {shape: 1.0 / len(SHAPES) for shape in SHAPES}
SIZE_PROBABILITIES = {"medium": 0.70, "small": 0.27, "large": 0.03}
POSITION_PROBABILITIES = {"center": 0.80, "left": 0.09, "right": 0.06, "top": 0.04, "bottom": 0.01}
BACKGROUND_PROBABILITIES = {"black": 0.75, "white": 0.16, "gray": 0.08, "brown": 0.01}

# Probability that a training caption names each attribute other than the shape.
NAMING_PROBABILITIES = {"color": 0.5, "size": 0.4, "position": 0.4, "background": 0.4}

POSITION_PHRASES = {
    "center": "in the center",
    "left": "on the left",
    "right": "on the right",
    "top": "at the top",
    "bottom": "at the bottom",
}


@dataclass(frozen=True)
class SceneAttributes:
    """The five attribute values of one scene."""

    shape: str
    color: str
    size: str
    position: str
    background: str

    def __post_init__(self) -> None:
        for name in ATTRIBUTE_NAMES:
            validate_attribute_value(name, getattr(self, name))

    def as_dict(self) -> dict[str, str]:
        return {name: getattr(self, name) for name in ATTRIBUTE_NAMES}


def validate_attribute_value(name: str, value: str) -> None:
    """Raise MinorityPromptError unless `value` is a known value of attribute `name`."""
    if name not in ATTRIBUTE_VALUES:
        raise MinorityPromptError(
            f"Unknown attribute {name!r}. Use one of {', '.join(ATTRIBUTE_NAMES)}."
        )
    if value not in ATTRIBUTE_VALUES[name]:
        raise MinorityPromptError(
            f"Invalid {name} {value!r}. Use one of {', '.join(ATTRIBUTE_VALUES[name])}."
        )


def color_probabilities(shape: str) -> dict[str, float]:
    """Return P(color | shape)."""
    validate_attribute_value("shape", shape)
    shift = SHAPES.index(shape)
    rotated = COLORS[shift:] + COLORS[:shift]
    return dict(zip(rotated, COLOR_WEIGHTS_BY_RANK, strict=True))


def joint_probability(attributes: SceneAttributes) -> float:
    """Return the unconditional probability of one attribute combination."""
    return (
        SHAPE_PROBABILITIES[attributes.shape]
        * color_probabilities(attributes.shape)[attributes.color]
        * SIZE_PROBABILITIES[attributes.size]
        * POSITION_PROBABILITIES[attributes.position]
        * BACKGROUND_PROBABILITIES[attributes.background]
    )


@lru_cache(maxsize=1)
def _joint_table() -> tuple[tuple[SceneAttributes, float], ...]:
    combinations = itertools.product(*ATTRIBUTE_VALUES.values())
    table = []
    for values in combinations:
        attributes = SceneAttributes(*values)
        table.append((attributes, joint_probability(attributes)))
    return tuple(table)


def all_attribute_combinations() -> list[SceneAttributes]:
    """List every attribute combination, in a fixed order."""
    return [attributes for attributes, _ in _joint_table()]


# ---------------------------------------------------------------------------------------------
# Captions


def caption_text(named: Mapping[str, str]) -> str:
    """Write the caption that names exactly the attributes in `named`.

    The word order is size, color, shape, position, background, for example
    "a small blue triangle at the top on a black background" or "an orange ring". An empty
    mapping gives the empty caption, which names nothing.
    """
    for name, value in named.items():
        validate_attribute_value(name, value)
    if not named:
        return ""
    if "shape" not in named:
        raise MinorityPromptError(
            f"Caption attributes {dict(named)} do not name the shape. Every non-empty caption "
            "must name it."
        )
    words = []
    if "size" in named:
        words.append(named["size"])
    if "color" in named:
        words.append(named["color"])
    words.append(named["shape"])
    words.insert(0, "an" if words[0][0] in "aeiou" else "a")
    if "position" in named:
        words.append(POSITION_PHRASES[named["position"]])
    if "background" in named:
        words.append(f"on a {named['background']} background")
    return " ".join(words)


_POSITION_BY_PHRASE = {phrase: position for position, phrase in POSITION_PHRASES.items()}
_CAPTION_PATTERN = re.compile(
    r"^an?"
    rf"(?: (?P<size>{'|'.join(SIZES)}))?"
    rf"(?: (?P<color>{'|'.join(COLORS)}))?"
    rf" (?P<shape>{'|'.join(SHAPES)})"
    rf"(?: (?P<position>{'|'.join(POSITION_PHRASES.values())}))?"
    rf"(?: on a (?P<background>{'|'.join(BACKGROUNDS)}) background)?$"
)


def parse_caption(caption: str) -> dict[str, str]:
    """Return the attributes that a caption names, as a mapping from attribute to value.

    Accepts the captions that `caption_text` writes, ignoring case, repeated whitespace and
    the choice between "a" and "an". The empty caption names nothing.
    """
    normalized = " ".join(caption.lower().split())
    if not normalized:
        return {}
    match = _CAPTION_PATTERN.match(normalized)
    if match is None:
        raise MinorityPromptError(
            f"Caption {caption!r} is not a scene caption. Write it as "
            "'a [size] [color] SHAPE [position phrase] [on a BACKGROUND background]', "
            "for example 'a small red circle on the left on a black background'."
        )
    named = {name: value for name, value in match.groupdict().items() if value is not None}
    if "position" in named:
        named["position"] = _POSITION_BY_PHRASE[named["position"]]
    return named


def caption_for(attributes: SceneAttributes, named_attributes: tuple[str, ...]) -> str:
    """Write the caption of `attributes` that names the attributes listed in `named_attributes`."""
    values = attributes.as_dict()
    return caption_text({name: values[name] for name in named_attributes})


@lru_cache(maxsize=1)
def training_captions() -> tuple[str, ...]:
    """List every caption the embedded model is trained on, except the empty caption.

    Each caption names the shape and any subset of the other four attributes:
    6 * 7 * 4 * 6 * 5 = 5,040 captions.
    """
    optional = [name for name in ATTRIBUTE_NAMES if name != "shape"]
    captions = []
    for shape in SHAPES:
        choices = [(None, *ATTRIBUTE_VALUES[name]) for name in optional]
        for values in itertools.product(*choices):
            named = {"shape": shape}
            for name, value in zip(optional, values, strict=True):
                if value is not None:
                    named[name] = value
            captions.append(caption_text(named))
    return tuple(captions)


# ---------------------------------------------------------------------------------------------
# Exact conditional probabilities


def _named_from(caption: str | Mapping[str, str]) -> dict[str, str]:
    if isinstance(caption, str):
        return parse_caption(caption)
    named = dict(caption)
    for name, value in named.items():
        validate_attribute_value(name, value)
    return named


def conditional_distribution(caption: str | Mapping[str, str]) -> dict[SceneAttributes, float]:
    """Return P(attributes | caption) for every combination that agrees with the caption.

    `caption` is a caption string or a mapping of named attributes. The probabilities sum
    to 1. Combinations that contradict the caption have probability 0 and are left out.
    """
    named = _named_from(caption)
    return dict(_conditional_items(tuple(sorted(named.items()))))


@lru_cache(maxsize=8192)
def _conditional_items(
    named: tuple[tuple[str, str], ...],
) -> tuple[tuple[SceneAttributes, float], ...]:
    matching = [
        (attributes, probability)
        for attributes, probability in _joint_table()
        if all(getattr(attributes, name) == value for name, value in named)
    ]
    total = sum(probability for _, probability in matching)
    return tuple((attributes, probability / total) for attributes, probability in matching)


def exact_probability(attributes: SceneAttributes, caption: str | Mapping[str, str]) -> float:
    """Return P(attributes | caption) under the training distribution.

    The result is 0 when `attributes` contradicts a value the caption names.
    """
    return conditional_distribution(caption).get(attributes, 0.0)


def attribute_marginals(caption: str | Mapping[str, str]) -> dict[str, dict[str, float]]:
    """Return, for each attribute, the distribution of its value given the caption."""
    marginals = {name: dict.fromkeys(values, 0.0) for name, values in ATTRIBUTE_VALUES.items()}
    for attributes, probability in conditional_distribution(caption).items():
        for name, value in attributes.as_dict().items():
            marginals[name][value] += probability
    return marginals


def unnamed_attributes(caption: str | Mapping[str, str]) -> tuple[str, ...]:
    """List the attributes that the caption leaves out, in `ATTRIBUTE_NAMES` order."""
    named = _named_from(caption)
    return tuple(name for name in ATTRIBUTE_NAMES if name not in named)
