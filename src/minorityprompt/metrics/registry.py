"""The better direction (higher or lower) of each metric, for tables that mark the best value."""

from __future__ import annotations

from typing import Literal

from ..errors import MinorityPromptError

Direction = Literal["higher", "lower"]

METRIC_DIRECTIONS: dict[str, Direction] = {
    # Minority generation aims for samples the model finds unlikely: lower log-likelihood,
    # higher bits per dimension. For judging a density model the directions are reversed.
    "log_likelihood": "lower",
    "bits_per_dim": "higher",
    "precision": "higher",
    "recall": "higher",
    "density": "higher",
    "coverage": "higher",
    "rarity_score": "higher",
    "clip_score": "higher",
    "pick_score": "higher",
    "image_reward": "higher",
    "in_batch_similarity": "lower",
}


def metric_direction(name: str) -> Direction:
    """Return "higher" or "lower": the better direction of the metric `name`."""
    try:
        return METRIC_DIRECTIONS[name]
    except KeyError:
        known = ", ".join(sorted(METRIC_DIRECTIONS))
        raise MinorityPromptError(
            f"metric {name!r} has no registered direction; known metrics: {known}."
        ) from None
