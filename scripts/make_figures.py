"""Regenerate the figures and tables of the documentation site under `docs/`.

    python scripts/make_figures.py                          # every figure it can make
    python scripts/make_figures.py tutorials                # only the tutorial figures
    python scripts/make_figures.py longtail --longtail-results results.json

Figures:

- `tutorials`: runs the quickstart and the sweep of the evaluation tutorial from
  `docs/tutorials/code/` in a temporary folder, exactly as a reader would, and copies the
  grid and the trade-off plot that they write to `docs/assets/tutorials/`.
- `samples`: DDIM and MinorityPrompt samples of the embedded model with shared seeds, at the
  embedded preset's settings, to `docs/assets/figures/embedded-samples.png`.
- `tradeoff`: the trade-off curves of a `minorityprompt sweep` folder given with `--sweep`
  (its `evaluation.json`), to `docs/assets/figures/tradeoff.png`.
- `longtail`: the long-tail benchmark table, from the results file given with
  `--longtail-results`, written into `docs/benchmarks.md` between its table markers.

A figure whose input is missing (the embedded model, a sweep folder, a results file) is
skipped, and a message names what is missing. The exit status is 1 if any requested figure
was skipped.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
TUTORIAL_CODE = DOCS / "tutorials" / "code"
TUTORIAL_ASSETS = DOCS / "assets" / "tutorials"
FIGURE_ASSETS = DOCS / "assets" / "figures"
BENCHMARKS_PAGE = DOCS / "benchmarks.md"
LONGTAIL_START = "<!-- longtail-table:start -->"
LONGTAIL_END = "<!-- longtail-table:end -->"
FIGURES = ("tutorials", "samples", "tradeoff", "longtail")

# Captions of the sample grid, from the most common kind to rarer combinations.
SAMPLE_CAPTIONS = ("a circle", "a red circle", "a blue square", "a green triangle",
                   "a small purple diamond", "an orange ring")
SAMPLE_SEEDS = (0, 1, 2)


class FigureSkipped(Exception):
    """A figure's input is missing. The message names the input and how to provide it."""


def run_tutorial_step(command: list[str], folder: Path) -> None:
    """Run one tutorial file in `folder`, with this interpreter's scripts on PATH."""
    environment = dict(os.environ)
    environment["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{environment.get('PATH', '')}"
    environment.setdefault("OMP_NUM_THREADS", "1")
    print(f"  running {' '.join(command)}")
    subprocess.run(command, cwd=folder, env=environment, check=True, stdout=subprocess.DEVNULL)


def make_tutorial_figures() -> list[Path]:
    """Run the quickstart and the evaluation sweep, and copy the images they write."""
    TUTORIAL_ASSETS.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="minorityprompt-figures-") as temporary:
        folder = Path(temporary)
        for path in TUTORIAL_CODE.iterdir():
            if path.suffix in (".py", ".sh"):
                shutil.copy(path, folder / path.name)
        run_tutorial_step([sys.executable, "quickstart.py"], folder)
        run_tutorial_step([sys.executable, "evaluation_models.py"], folder)
        run_tutorial_step(["bash", "-e", "sweep.sh"], folder)
        targets = [
            (folder / "quickstart.png", TUTORIAL_ASSETS / "quickstart.png"),
            (folder / "outputs" / "sweep" / "tradeoff.png", TUTORIAL_ASSETS / "tradeoff.png"),
        ]
        for source, target in targets:
            shutil.copy(source, target)
    return [target for _, target in targets]


def make_sample_grid() -> list[Path]:
    """DDIM against MinorityPrompt on the embedded model, one row per caption and seed."""
    from minorityprompt import PromptOptimizer, TokenSpec, generate, load_pipeline
    from minorityprompt.errors import MinorityPromptError
    from minorityprompt.models.presets import PRESETS
    from minorityprompt.visualization import labelled_grid

    try:
        pipe = load_pipeline("embedded", device="cpu")
    except MinorityPromptError as error:
        raise FigureSkipped(f"the embedded model is not available: {error}") from None
    preset = PRESETS["embedded"]
    prompts = [caption for caption in SAMPLE_CAPTIONS for _ in SAMPLE_SEEDS]
    seeds = [seed for _ in SAMPLE_CAPTIONS for seed in SAMPLE_SEEDS]
    sampling = {
        "num_inference_steps": preset.steps,
        "guidance_scale": preset.guidance_scale,
        "height": preset.resolution,
        "width": preset.resolution,
        "progress": False,
    }
    ddim = generate(pipe, prompts, seeds, solver=preset.solver, **sampling)
    optimizer = PromptOptimizer(
        every=preset.every,
        iterations=preset.iterations,
        lr=preset.lr,
        tokens=TokenSpec(init=preset.init),
    )
    minority = generate(pipe, prompts, seeds, optimizer=optimizer, solver=preset.solver, **sampling)

    # One row per caption: its seeds under DDIM, then the same seeds under MinorityPrompt.
    count = len(SAMPLE_SEEDS)
    rows, labels = [], []
    for index, caption in enumerate(SAMPLE_CAPTIONS):
        chunk = slice(index * count, (index + 1) * count)
        rows.append(list(ddim.images[chunk]) + list(minority.images[chunk]))
        labels.append(caption)
    headers = [f"DDIM {seed}" for seed in SAMPLE_SEEDS]
    headers += [f"Minority {seed}" for seed in SAMPLE_SEEDS]
    FIGURE_ASSETS.mkdir(parents=True, exist_ok=True)
    target = FIGURE_ASSETS / "embedded-samples.png"
    labelled_grid(rows, headers, labels, cell_size=96).save(target)
    return [target]


def sweep_curves(evaluation: dict, x_column: str, y_column: str) -> dict[str, list[tuple]]:
    """Group an `evaluation.json`'s rows into curves of `(sweep value, x, y, label)` per method."""
    curves: dict[str, list[tuple]] = {}
    for group in evaluation["groups"]:
        values = group.get("values", {})
        if x_column not in values or y_column not in values:
            continue
        point = group.get("sweep_point") or {}
        try:
            order = float(point.get("value"))
        except (TypeError, ValueError):
            order = math.nan
        label = group["label"].split(" (")[0]
        if point.get("parameter"):
            label = f"{label} ({point['parameter']})"
        curves.setdefault(label, []).append(
            (order, values[x_column], values[y_column], point.get("label", ""))
        )
    for points in curves.values():
        points.sort(key=lambda point: point[0])
    return curves


def make_tradeoff_figure(sweep: Path | None, x_column: str, y_column: str) -> list[Path]:
    """Plot `y_column` against `x_column` per method across the sweep's points."""
    from matplotlib.figure import Figure

    if sweep is None:
        raise FigureSkipped(
            "no sweep folder was given; pass --sweep FOLDER written by minorityprompt sweep"
        )
    results = sweep / "evaluation.json"
    if not results.is_file():
        raise FigureSkipped(
            f"{results} does not exist; run minorityprompt sweep (or evaluate) on {sweep} first"
        )
    evaluation = json.loads(results.read_text(encoding="utf-8"))
    titles = {name: column["title"] for name, column in evaluation.get("columns", {}).items()}
    curves = sweep_curves(evaluation, x_column, y_column)
    if not curves:
        raise FigureSkipped(f"{results} has no groups with both {x_column!r} and {y_column!r}")

    figure = Figure(figsize=(6, 4.5))
    axes = figure.subplots()
    for label, points in curves.items():
        xs = [point[1] for point in points]
        ys = [point[2] for point in points]
        (line,) = axes.plot(xs, ys, marker="o", label=label)
        for _, x, y, text in points:
            axes.annotate(text, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7,
                          color=line.get_color())
    axes.set_xlabel(titles.get(x_column, x_column))
    axes.set_ylabel(titles.get(y_column, y_column))
    axes.grid(True, alpha=0.3)
    axes.legend()
    figure.tight_layout()
    FIGURE_ASSETS.mkdir(parents=True, exist_ok=True)
    target = FIGURE_ASSETS / "tradeoff.png"
    figure.savefig(target, dpi=150)
    return [target]


def read_result_rows(path: Path) -> list[dict]:
    """Rows of a results file: a JSON list of objects, a JSON object with a `rows` list, or CSV."""
    if path.suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as handle:
            return list(csv.DictReader(handle))
    data = json.loads(path.read_text(encoding="utf-8"))
    rows = data.get("rows") if isinstance(data, dict) else data
    if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
        raise FigureSkipped(
            f"{path} is not a list of result rows; expected a JSON list of objects, an object "
            "with a 'rows' list, or a CSV file"
        )
    return rows


def format_cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


def markdown_table(rows: list[dict]) -> str:
    """Format rows as a Markdown table, one column per key in the order keys first appear."""
    columns: list[str] = []
    for row in rows:
        columns += [key for key in row if key not in columns]
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(format_cell(row.get(key, "")) for key in columns) + " |")
    return "\n".join(lines)


def make_longtail_table(results: Path | None) -> list[Path]:
    """Write the long-tail benchmark table into the benchmarks page between its markers."""
    if results is None:
        raise FigureSkipped(
            "no long-tail results file was given; pass --longtail-results FILE written by the "
            "long-tail benchmark"
        )
    if not results.is_file():
        raise FigureSkipped(f"the long-tail results file {results} does not exist")
    rows = read_result_rows(results)
    if not rows:
        raise FigureSkipped(f"the long-tail results file {results} contains no rows")
    page = BENCHMARKS_PAGE.read_text(encoding="utf-8")
    if LONGTAIL_START not in page or LONGTAIL_END not in page:
        raise FigureSkipped(
            f"{BENCHMARKS_PAGE} lacks the markers {LONGTAIL_START} and {LONGTAIL_END}"
        )
    before, rest = page.split(LONGTAIL_START, 1)
    _, after = rest.split(LONGTAIL_END, 1)
    table = f"{LONGTAIL_START}\n{markdown_table(rows)}\n\nSource: `{results.name}`.\n{LONGTAIL_END}"
    BENCHMARKS_PAGE.write_text(before + table + after, encoding="utf-8")
    return [BENCHMARKS_PAGE]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("figures", nargs="*", metavar="FIGURE",
                        help=f"figures to make: {', '.join(FIGURES)} (default: all)")
    parser.add_argument("--sweep", type=Path, help="a minorityprompt sweep folder for 'tradeoff'")
    parser.add_argument("--x", default="clip_score", help="x column of the trade-off plot")
    parser.add_argument("--y", default="bits_per_dim", help="y column of the trade-off plot")
    parser.add_argument("--longtail-results", type=Path,
                        help="results file of the long-tail benchmark (.json or .csv)")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.figures) - set(FIGURES))
    if unknown:
        parser.error(f"unknown figures {unknown}; choose from {', '.join(FIGURES)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    makers = {
        "tutorials": make_tutorial_figures,
        "samples": make_sample_grid,
        "tradeoff": lambda: make_tradeoff_figure(args.sweep, args.x, args.y),
        "longtail": lambda: make_longtail_table(args.longtail_results),
    }
    skipped = 0
    for name in args.figures or FIGURES:
        print(f"{name}:")
        try:
            written = makers[name]()
        except FigureSkipped as reason:
            skipped += 1
            print(f"  skipped: {reason}")
            continue
        for path in written:
            print(f"  wrote {path.relative_to(ROOT)}")
    return 1 if skipped else 0


if __name__ == "__main__":
    sys.exit(main())
