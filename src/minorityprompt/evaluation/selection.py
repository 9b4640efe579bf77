"""Metric names, the table columns each one fills, and which metrics can run by default."""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path

from ..errors import MinorityPromptError
from ..metrics.registry import METRIC_DIRECTIONS

logger = logging.getLogger(__name__)

METRICS = (
    "clip_score",
    "prdc",
    "rarity",
    "in_batch_similarity",
    "likelihood",
    "pick_score",
    "image_reward",
)

METRIC_COLUMNS: dict[str, tuple[str, ...]] = {
    "clip_score": ("clip_score",),
    "prdc": ("precision", "recall", "density", "coverage"),
    "rarity": ("rarity_score",),
    "in_batch_similarity": ("in_batch_similarity",),
    "likelihood": ("bits_per_dim",),
    "pick_score": ("pick_score",),
    "image_reward": ("image_reward",),
}

COLUMN_TITLES = {
    "clip_score": "CLIPScore",
    "precision": "Precision",
    "recall": "Recall",
    "density": "Density",
    "coverage": "Coverage",
    "rarity_score": "Rarity",
    "in_batch_similarity": "In-Batch Sim.",
    "bits_per_dim": "Latent bits/dim",
    "log_likelihood": "Latent log-likelihood",
    "pick_score": "PickScore",
    "image_reward": "ImageReward",
}

ARROWS = {"higher": "↑", "lower": "↓"}


def parse_metrics(text: str) -> list[str]:
    """Split a comma-separated metric list and check each name."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise MinorityPromptError(
            f"--metrics {text!r} names no metric; choose from {', '.join(METRICS)}."
        )
    unknown = [name for name in names if name not in METRICS]
    if unknown:
        raise MinorityPromptError(
            f"Unknown metrics {unknown} in --metrics; choose from {', '.join(METRICS)}."
        )
    return list(dict.fromkeys(names))


def column_title(column: str) -> str:
    """Return the table header of a column: its title and the arrow of the better side."""
    return f"{COLUMN_TITLES.get(column, column)} {ARROWS[METRIC_DIRECTIONS[column]]}"


def plot_column(name: str) -> tuple[str, str]:
    """Resolve a `--plot` axis to `(metric, column)`.

    Takes a metric with one column (`clip_score`, `likelihood`, `rarity`, ...) or a column
    name (`precision`, `bits_per_dim`, ...).
    """
    if name in METRIC_COLUMNS and len(METRIC_COLUMNS[name]) == 1:
        return name, METRIC_COLUMNS[name][0]
    for metric, columns in METRIC_COLUMNS.items():
        if name in columns:
            return metric, name
    choices = sorted(
        {metric for metric, columns in METRIC_COLUMNS.items() if len(columns) == 1}
        | {column for columns in METRIC_COLUMNS.values() for column in columns}
    )
    raise MinorityPromptError(
        f"Cannot plot {name!r}; use one of {', '.join(choices)} for each axis of --plot."
    )


def parse_plot(text: str) -> tuple[tuple[str, str], tuple[str, str]]:
    """Parse `--plot X,Y` into the `(metric, column)` pairs of both axes."""
    parts = [part.strip() for part in text.split(",")]
    if len(parts) != 2 or not all(parts):
        raise MinorityPromptError(
            f"Invalid --plot {text!r}; give two metrics as X,Y, such as clip_score,likelihood."
        )
    return plot_column(parts[0]), plot_column(parts[1])


def source_is_local(source: str | os.PathLike[str]) -> bool:
    return Path(os.fspath(source)).expanduser().exists()


def source_is_available(source: str | os.PathLike[str]) -> bool:
    """Return whether a model loads without a download: a local path or a cached hub id.

    Checks the Hugging Face cache only, so it never contacts the hub.
    """
    if source_is_local(source):
        return True
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    try:
        cached = try_to_load_from_cache(os.fspath(source), "config.json")
    except ValueError:
        # Raised for strings that are no valid repository id.
        return False
    return isinstance(cached, str)


def image_reward_is_available(source: str) -> bool:
    """Return whether the ImageReward package is installed and its checkpoint on disk."""
    if importlib.util.find_spec("ImageReward") is None:
        return False
    if source_is_local(source):
        return True
    default_file = Path("~/.cache/ImageReward/ImageReward.pt").expanduser()
    return default_file.is_file()
