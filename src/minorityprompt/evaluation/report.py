"""`evaluation.json`, the Markdown table `evaluation.md`, and the trade-off plot."""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import asdict
from pathlib import Path

from ..metrics.registry import METRIC_DIRECTIONS
from .compute import Evaluation, GroupResult
from .groups import METHOD_LABELS
from .likelihood import LIKELIHOOD_NOTE, LIKELIHOOD_SPACE
from .selection import ARROWS, COLUMN_TITLES, METRIC_COLUMNS, column_title

logger = logging.getLogger(__name__)

JSON_FILE = "evaluation.json"
MARKDOWN_FILE = "evaluation.md"
PLOT_FILE = "tradeoff.png"


def columns(evaluation: Evaluation) -> list[str]:
    return [column for name in evaluation.metrics for column in METRIC_COLUMNS[name]]


def _format(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    magnitude = abs(value)
    if magnitude != 0 and (magnitude >= 1e4 or magnitude < 1e-3):
        return f"{value:.3e}"
    return f"{value:.4f}"


def markdown_table(evaluation: Evaluation) -> str:
    """One row per method and sweep point, one column per metric, arrows for the better side."""
    names = columns(evaluation)
    header = ["Method", "Images", *(column_title(column) for column in names)]
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] * 2 + ["---:"] * len(names)) + "|",
    ]
    for result in evaluation.results:
        cells = [result.group.label, str(len(result.group.records))]
        cells += [_format(result.values.get(column)) for column in names]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def notes(evaluation: Evaluation) -> list[str]:
    """Return the sentences printed under the table: directions, likelihood space, skips."""
    lines = [f"{ARROWS['higher']} higher is better, {ARROWS['lower']} lower is better."]
    if "likelihood" in evaluation.metrics:
        lines.append(LIKELIHOOD_NOTE)
    if "in_batch_similarity" in evaluation.metrics:
        lines.append("In-Batch Sim.: mean pairwise cosine similarity of DINO features of the "
                     "images of one prompt; lower means more diverse samples.")
    if "clip_score" in evaluation.metrics or "pick_score" in evaluation.metrics:
        lines.append("Text-image scores use each image's prompt from the run metadata.")
    for name, reason in evaluation.skipped.items():
        lines.append(f"Not computed: {name} ({reason}).")
    return lines


def markdown_report(evaluation: Evaluation) -> str:
    folders = ", ".join(f"`{folder}`" for folder in evaluation.folders)
    parts = ["# Evaluation", "", f"Runs: {folders}", "", markdown_table(evaluation), ""]
    parts += [f"- {line}" for line in notes(evaluation)]
    return "\n".join(parts) + "\n"


def _group_json(result: GroupResult) -> dict:
    group = result.group
    return {
        "key": group.key,
        "label": group.label,
        "method": group.method,
        "sweep_point": group.sweep_point,
        "folders": [str(folder) for folder in group.folders],
        "images": len(group.records),
        "prompts": len(set(group.prompts)),
        "values": result.values,
        "metrics": {
            name: {
                "values": {column: result.values.get(column) for column in METRIC_COLUMNS[name]},
                "details": result.details.get(name, {}),
                "fingerprint": result.fingerprints.get(name),
            }
            for name in result.fingerprints
            if name in result.details
        },
    }


def evaluation_json(evaluation: Evaluation) -> dict:
    options = asdict(evaluation.options)
    return {
        "folders": [str(folder) for folder in evaluation.folders],
        "metrics": evaluation.metrics,
        "columns": {
            column: {"title": COLUMN_TITLES.get(column, column),
                     "better": METRIC_DIRECTIONS[column]}
            for column in columns(evaluation)
        },
        "likelihood": (
            {"space": LIKELIHOOD_SPACE, "note": LIKELIHOOD_NOTE}
            if "likelihood" in evaluation.metrics else None
        ),
        "skipped": evaluation.skipped,
        "options": json.loads(json.dumps(options, default=str)),
        "groups": [_group_json(result) for result in evaluation.results],
    }


def _write_atomic(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


def write_report(evaluation: Evaluation, folder: str | Path) -> tuple[Path, Path]:
    """Write `evaluation.json` and `evaluation.md` to `folder`; return both paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    json_path, markdown_path = folder / JSON_FILE, folder / MARKDOWN_FILE
    _write_atomic(json_path, json.dumps(evaluation_json(evaluation), indent=2) + "\n")
    _write_atomic(markdown_path, markdown_report(evaluation))
    return json_path, markdown_path


def tradeoff_plot(
    evaluation: Evaluation, x_column: str, y_column: str, path: str | Path
) -> Path:
    """Draw one curve per method (and swept parameter) across sweep points, x against y.

    Points are ordered by the swept value and labelled with it; a group without a sweep
    point is a single marker.
    """
    # A Figure without pyplot renders off-screen and leaves the user's backend alone.
    from matplotlib.figure import Figure

    curves: dict[tuple[str, str], list[GroupResult]] = {}
    for result in evaluation.results:
        sweep = result.group.sweep_point
        parameter = sweep["parameter"] if sweep else ""
        curves.setdefault((result.group.method, parameter), []).append(result)
    methods_with_several = {
        method for method, _ in curves if sum(key[0] == method for key in curves) > 1
    }

    figure = Figure(figsize=(6, 4.5))
    axes = figure.subplots()
    for (method, parameter), results in curves.items():
        results = sorted(results, key=lambda item: item.group.sweep_value())
        points = [
            (item.values.get(x_column), item.values.get(y_column), item.group) for item in results
        ]
        points = [(x, y, group) for x, y, group in points if x is not None and y is not None]
        if not points:
            logger.warning("No %s and %s values for %s; it is left out of the plot",
                           x_column, y_column, method)
            continue
        label = METHOD_LABELS.get(method, method)
        if parameter and method in methods_with_several:
            label += f" ({parameter})"
        xs = [x for x, _, _ in points]
        ys = [y for _, y, _ in points]
        (line,) = axes.plot(xs, ys, marker="o", label=label)
        for x, y, group in points:
            text = group.sweep_point["label"] if group.sweep_point else (group.folder_label or "")
            if text:
                axes.annotate(text, (x, y), textcoords="offset points", xytext=(4, 4),
                              fontsize=7, color=line.get_color())
    axes.set_xlabel(column_title(x_column))
    axes.set_ylabel(column_title(y_column))
    axes.set_title("Trade-off across sweep points")
    axes.grid(True, alpha=0.3)
    axes.legend()
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path, dpi=150)
    return path
