"""Parse weighted sums of registered objectives written as text: `0.5*minority+diversity`."""

from __future__ import annotations

import re
from collections.abc import Mapping

from ..errors import MinorityPromptError
from .base import Objective, WeightedSum, get_objective

_NUMBER = r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?"
_TERM = re.compile(
    rf"\s*(?:(?P<weight>{_NUMBER})\s*\*\s*)?(?P<name>[A-Za-z_][\w.\-]*)\s*(?P<end>\+|$)"
)


def is_objective_spec(text: str) -> bool:
    """Whether `text` is a weighted sum (contains `+` or `*`) rather than a plain name."""
    return "+" in text or "*" in text


def parse_terms(text: str) -> list[tuple[float, str]]:
    """Split `"w1*name1 + w2*name2 + ..."` into `(weight, name)` pairs; a missing weight is 1.

    Raises:
        MinorityPromptError: If the text is not a `+`-separated list of `[weight*]name`.
    """
    terms: list[tuple[float, str]] = []
    position = 0
    while position < len(text):
        match = _TERM.match(text, position)
        if match is None:
            raise MinorityPromptError(
                f"Invalid objective spec {text!r} at character {position}; write terms "
                "'[weight*]name' joined by '+', such as '0.5*minority+1*diversity'."
            )
        weight = 1.0 if match["weight"] is None else float(match["weight"])
        terms.append((weight, match["name"]))
        position = match.end()
        if match["end"] == "+" and position == len(text):
            raise MinorityPromptError(
                f"Invalid objective spec {text!r}: it ends with '+'; remove it or add a term."
            )
    if not terms:
        raise MinorityPromptError("The objective spec is empty; give a name such as 'minority'.")
    return terms


def parse_objective_spec(
    text: str, options: Mapping[str, Mapping] | None = None
) -> Objective:
    """Build the objective that `text` names: one registered name or a weighted sum.

    Args:
        text: `"minority"`, `"diversity"`, `"0.5*minority+1*diversity"`, ... Weights are
            floats and may be negative; names are registered objectives.
        options: Constructor options per objective name, such as
            `{"minority": {"lam": 1.0}}`; a name that is absent from `text` is an error.

    A single term without weight returns that objective itself, not a one-term sum.
    """
    options = dict(options or {})
    terms = parse_terms(text)
    names = {name for _, name in terms}
    unused = sorted(set(options) - names)
    if unused:
        raise MinorityPromptError(
            f"Objective options were given for {unused}, which the spec {text!r} does not use."
        )
    built = [(weight, get_objective(name, **dict(options.get(name, {})))) for weight, name in terms]
    if len(built) == 1 and not is_objective_spec(text):
        return built[0][1]
    return WeightedSum(built)
