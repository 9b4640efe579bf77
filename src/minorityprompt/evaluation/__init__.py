"""Evaluation of `generate` and `sweep` runs: metrics per method and sweep point, a Markdown
table and a trade-off plot.

`evaluate_runs` groups a run's images by method and sweep point and computes the chosen
metrics for each group; `write_report` and `tradeoff_plot` write the results.
"""

from .compute import Evaluation, GroupResult, choose_metrics, evaluate_runs
from .groups import ImageGroup, ImageRecord, find_run_folders, group_records, load_records
from .likelihood import LikelihoodSettings, encode_latents, latent_likelihood
from .report import (
    JSON_FILE,
    MARKDOWN_FILE,
    PLOT_FILE,
    evaluation_json,
    markdown_report,
    markdown_table,
    tradeoff_plot,
    write_report,
)
from .resources import EvaluationOptions
from .selection import METRIC_COLUMNS, METRICS, parse_metrics, parse_plot

__all__ = [
    "JSON_FILE",
    "MARKDOWN_FILE",
    "METRICS",
    "METRIC_COLUMNS",
    "PLOT_FILE",
    "Evaluation",
    "EvaluationOptions",
    "GroupResult",
    "ImageGroup",
    "ImageRecord",
    "LikelihoodSettings",
    "choose_metrics",
    "encode_latents",
    "evaluate_runs",
    "evaluation_json",
    "find_run_folders",
    "group_records",
    "latent_likelihood",
    "load_records",
    "markdown_report",
    "markdown_table",
    "parse_metrics",
    "parse_plot",
    "tradeoff_plot",
    "write_report",
]
