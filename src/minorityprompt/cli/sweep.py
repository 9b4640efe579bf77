"""`minorityprompt sweep`: generate a grid of settings over prompts, then evaluate every point."""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import MinorityPromptError
from ..evaluation import parse_plot
from . import generate
from .evaluate import add_evaluation_arguments, evaluate_and_report, options_from_args

logger = logging.getLogger(__name__)

SWEEP_FILE = "sweep.json"
DEFAULT_PLOT = "clip_score,likelihood"
# Generate options that choose prompts, outputs or batching rather than the images of a point.
NOT_SWEEPABLE = {
    "out", "prompt", "prompts", "limit", "shuffle_seed", "file_seeds", "method", "compare",
    "plugin", "no_progress", "batch_size", "device", "help", "run",
}
# Methods that read the prompt-optimizer options; other methods take those keys as method
# settings (`--set`), such as SGMS's own `lr`.
OPTIMIZER_METHODS = ("minority", "diversity")
OPTIMIZER_GROUP_PREFIX = "prompt optimizer"
SAFE_TOKEN = re.compile(r"^[A-Za-z0-9._+-]+$")
BOOLEAN_WORDS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}


@dataclass(frozen=True)
class GridSpec:
    """One `--grid` entry: a method and, optionally, one setting with its values."""

    method: str
    parameter: str | None
    tokens: tuple[str, ...]


@dataclass(frozen=True)
class SweepPoint:
    """One run of the sweep: its folder name and the setting it changes.

    Attributes:
        as_option: True if `parameter` is a generate option (set on the arguments), False
            if it is a method setting (passed as `--set parameter=token`).
    """

    method: str
    parameter: str | None
    value: object
    token: str | None
    as_option: bool = True

    @property
    def name(self) -> str:
        if self.parameter is None:
            return self.method
        return f"{self.method}-{self.parameter}={self.token}"

    def metadata(self) -> dict | None:
        if self.parameter is None:
            return None
        return {"parameter": self.parameter, "value": self.value,
                "label": f"{self.parameter}={self.token}"}

    def apply(self, args: argparse.Namespace, out: Path) -> argparse.Namespace:
        """Copy the generate arguments and set this point's method, setting and folder."""
        point_args = argparse.Namespace(**vars(args))
        point_args.method = self.method
        point_args.out = str(out / self.name)
        point_args.sweep_point = self.metadata()
        if self.parameter is not None and self.as_option:
            setattr(point_args, self.parameter, self.value)
        elif self.parameter is not None:
            point_args.set = [*args.set, f"{self.parameter}={self.token}"]
        return point_args


def parse_grid(text: str) -> GridSpec:
    """Parse `METHOD` or `METHOD:KEY=V1,V2,...`."""
    method, separator, assignment = text.partition(":")
    method = method.strip()
    if not method:
        raise MinorityPromptError(
            f"Invalid --grid {text!r}; write METHOD or METHOD:KEY=V1,V2 such as "
            "minority:lr=5e-4,1e-3."
        )
    if not separator:
        return GridSpec(method, None, ())
    key, equals, values = assignment.partition("=")
    tokens = tuple(token.strip() for token in values.split(",") if token.strip())
    if not equals or not key.strip() or not tokens or ":" in values:
        raise MinorityPromptError(
            f"Invalid --grid {text!r}; after the method write KEY=V1,V2,... such as "
            "minority:lr=5e-4,1e-3 (one key per --grid)."
        )
    for token in tokens:
        if not SAFE_TOKEN.match(token):
            raise MinorityPromptError(
                f"Invalid value {token!r} in --grid {text!r}; values name folders, so use "
                "letters, digits and . _ + - only."
            )
    return GridSpec(method, key.strip().replace("-", "_"), tokens)


def _generate_parser() -> argparse.ArgumentParser:
    """Build the parser of `generate`, so that sweep accepts exactly its options."""
    holder = argparse.ArgumentParser(add_help=False)
    commands = holder.add_subparsers()
    generate.add_parser(commands)
    return commands.choices["generate"]


def add_parser(commands) -> None:
    parser = commands.add_parser(
        "sweep",
        parents=[_generate_parser()],
        conflict_handler="resolve",
        help="generate a grid of settings and evaluate every point",
        description=(
            "Run `generate` once per grid point into OUT/METHOD-KEY=VALUE/, then evaluate all "
            "points together and draw the trade-off plot. Takes every generate option; the "
            "grid sets the method and one setting per point. Rerunning the same command "
            "resumes unfinished points and reuses stored metric values."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--grid", action="append", required=True,
                        metavar="METHOD[:KEY=V1,V2,...]",
                        help="a method and the values of one setting: a generate option "
                             "by its long name (lr, guidance, steps, every, ...) or a method "
                             "setting such as sgms:lr=5e-3,1e-2; repeat for more curves, e.g. "
                             "--grid minority:lr=5e-4,1e-3 --grid ddim:guidance=1,3,7.5")
    parser.add_argument("--out", default="sweep",
                        help="sweep folder; results go to evaluation.json/.md and tradeoff.png")
    parser.add_argument("--no-evaluate", action="store_true",
                        help="generate the points only")
    add_evaluation_arguments(parser, model_options=False)
    parser.set_defaults(run=run)


def _convert(action: argparse.Action, token: str, spec: GridSpec):
    if action.nargs == 0 and isinstance(action.const, bool):
        # A switch such as --reuse-optimized.
        if token.lower() not in BOOLEAN_WORDS:
            raise MinorityPromptError(
                f"Invalid value {token!r} for the switch {spec.parameter!r} in --grid; use "
                "true or false."
            )
        return BOOLEAN_WORDS[token.lower()]
    try:
        value = action.type(token) if action.type is not None else token
    except (TypeError, ValueError, MinorityPromptError, argparse.ArgumentTypeError) as error:
        raise MinorityPromptError(
            f"Invalid value {token!r} for {spec.parameter!r} in --grid: {error}."
        ) from None
    if action.choices is not None and value not in action.choices:
        raise MinorityPromptError(
            f"Invalid value {token!r} for {spec.parameter!r} in --grid; choose from "
            f"{list(action.choices)}."
        )
    return value


def _number_or_text(token: str):
    try:
        return float(token)
    except ValueError:
        return token


def sweep_points(specs: list[GridSpec], parser: argparse.ArgumentParser) -> list[SweepPoint]:
    """Check the grid against the generate options and list its points in order.

    A key that names a generate option sets that option. Keys that name no option become
    method settings (`--set KEY=VALUE`). So do the prompt-optimizer keys (`lr`, `every`, ...)
    for methods other than `OPTIMIZER_METHODS`, except `ddim`, which takes options only.
    """
    actions = {action.dest: action for action in parser._actions if action.option_strings}
    optimizer_options = {
        action.dest
        for group in parser._action_groups
        if (group.title or "").startswith(OPTIMIZER_GROUP_PREFIX)
        for action in group._group_actions
    }
    methods = actions["method"].choices
    points: list[SweepPoint] = []
    for spec in specs:
        if spec.method not in methods:
            raise MinorityPromptError(
                f"Unknown method {spec.method!r} in --grid; choose from {list(methods)}."
            )
        if spec.parameter is None:
            points.append(SweepPoint(spec.method, None, None, None))
            continue
        is_option = spec.parameter in actions and (
            spec.method in OPTIMIZER_METHODS or spec.parameter not in optimizer_options
        )
        if not is_option and spec.method != "ddim":
            # A method setting; `method_kwargs` checks its name before anything runs.
            for token in spec.tokens:
                points.append(SweepPoint(spec.method, spec.parameter, _number_or_text(token),
                                         token, as_option=False))
            continue
        if not is_option or spec.parameter in NOT_SWEEPABLE:
            unused = optimizer_options if spec.method not in OPTIMIZER_METHODS else set()
            sweepable = sorted(set(actions) - NOT_SWEEPABLE - unused)
            raise MinorityPromptError(
                f"Cannot sweep {spec.parameter!r} for {spec.method!r}; its sweepable generate "
                f"options are {', '.join(sweepable)}."
            )
        for token in spec.tokens:
            value = _convert(actions[spec.parameter], token, spec)
            points.append(SweepPoint(spec.method, spec.parameter, value, token))
    names = [point.name for point in points]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise MinorityPromptError(f"The grid repeats the points {repeated}; list each once.")
    return points


def run(args: argparse.Namespace) -> int:
    from ..methods import method_kwargs
    from .generate_run import execute, method_settings, resolve_settings

    if args.compare:
        raise MinorityPromptError(
            "sweep takes its methods from --grid; drop --compare and add a --grid per method."
        )
    points = sweep_points([parse_grid(text) for text in args.grid], _generate_parser())
    # Check the evaluation options before generating, so a typo does not wait for the end.
    options = options_from_args(args, model=None, dtype=None)
    if args.plot:
        parse_plot(args.plot)
    for plugin in args.plugin:
        generate.load_plugin(plugin)
    entries = generate._entries(args)
    rank, world_size = generate._distributed()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if rank == 0:
        sweep = {"points": [{"folder": point.name, "method": point.method,
                             "sweep_point": point.metadata()} for point in points]}
        temporary = out / f".{SWEEP_FILE}.{os.getpid()}.tmp"
        temporary.write_text(json.dumps(sweep, indent=2, default=str), encoding="utf-8")
        os.replace(temporary, out / SWEEP_FILE)

    point_args = [point.apply(args, out) for point in points]
    for arguments in point_args:
        # Check every point's settings before generating any.
        settings = resolve_settings(arguments)
        method_kwargs(arguments.method, method_settings(arguments, settings, arguments.method),
                      [0, 1], settings["guidance_scale"])

    for index, (point, arguments) in enumerate(zip(points, point_args, strict=True), start=1):
        if rank == 0:
            print(f"[{index}/{len(points)}] {point.name}")
        execute(arguments, entries, rank, world_size)
    folders = [arguments.out for arguments in point_args]

    if rank != 0 or args.no_evaluate:
        return 0
    return evaluate_and_report(args, folders, out, options, default_plot=DEFAULT_PLOT)
