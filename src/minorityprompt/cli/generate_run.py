"""The work behind `minorityprompt generate`, once its arguments are read."""

from __future__ import annotations

import argparse
import logging
import time
from datetime import timedelta

import torch

from .. import __version__
from ..errors import MinorityPromptError
from ..methods import method_kwargs, run_method
from ..models.loading import load_pipeline
from ..models.presets import PRESETS
from ..outputs import RunWriter, image_key
from ..prompts import PromptEntry
from ..runs import plan_jobs, run_jobs
from ..visualization import labelled_grid

logger = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
COMPARE_FILE = "compare.png"
COMPARE_MAX_ROWS = 16
# Ranks meet before and after generating, and a rank that finishes early waits for the
# slowest. A resumed run can leave ranks with very different amounts of work, so the limit is
# far above torch.distributed's default of 30 minutes.
# NOTE: 7 days is a guess at the longest run, not a measured bound.
BARRIER_TIMEOUT = timedelta(days=7)


# The gloo group of `wait_for_all_ranks`, created by its first call; `None` stands for the
# default group when this module initialized it.
_barrier_group = None
_barrier_ready = False


def wait_for_all_ranks() -> None:
    """Block until every process of the run (RANK, WORLD_SIZE) has called this.

    The barrier runs on a gloo process group whatever the device, because it exchanges no
    tensors. accelerate's `PartialState().wait_for_everyone()` is no barrier here: accelerate
    1.16 treats torchrun processes on CPUs as one process and returns at once.
    """
    import torch.distributed as dist

    global _barrier_group, _barrier_ready
    if not _barrier_ready:
        if dist.is_initialized():
            _barrier_group = dist.new_group(backend="gloo", timeout=BARRIER_TIMEOUT)
        else:
            dist.init_process_group(backend="gloo", timeout=BARRIER_TIMEOUT)
        _barrier_ready = True
    dist.barrier(group=_barrier_group)


def _s_value(text: str):
    if text == "annealed":
        return text
    try:
        return float(text)
    except ValueError:
        raise MinorityPromptError(
            f"Invalid --s {text!r}; use 'annealed' or a ratio of T such as 0.75."
        ) from None


def _plain(settings: dict) -> dict:
    """Settings with values JSON can hold (tuples become lists, objects their repr)."""
    plain = {}
    for key, value in settings.items():
        if isinstance(value, (str, int, float, bool)) or value is None:
            plain[key] = value
        elif isinstance(value, (list, tuple)):
            plain[key] = list(value)
        else:
            plain[key] = repr(value)
    return plain


def resolve_settings(args: argparse.Namespace) -> dict:
    """Sampling and optimizer settings: explicit flags, else the solver's or the preset's own.

    A solver with its own guidance scale (CFG++ at 0.6, Lightning at 1) and its own
    optimizer defaults (Lightning optimizes every step) overrides the preset for the values
    that the command line leaves unset.
    """
    from ..solvers.registry import get_solver

    preset = PRESETS.get(args.model)

    def pick(value, field, fallback):
        if value is not None:
            return value
        return getattr(preset, field) if preset else fallback

    solver_name = pick(args.solver, "solver", "ddim")
    solver_class = type(get_solver(solver_name))
    solver_guidance = getattr(solver_class, "default_guidance_scale", None)
    solver_optimizer = getattr(solver_class, "optimizer_defaults", {})
    settings = {
        "solver": solver_name,
        "steps": pick(args.steps, "steps", 50),
        "guidance_scale": (
            args.guidance if args.guidance is not None
            else solver_guidance if solver_guidance is not None
            else pick(None, "guidance_scale", 7.5)
        ),
    }
    settings["init"] = pick(args.init, "init", "cool")
    for field, fallback in (("lr", 1e-3), ("every", 3), ("iterations", 3)):
        value = getattr(args, field)
        settings[field] = value if value is not None else solver_optimizer.get(
            field, pick(None, field, fallback)
        )
    if settings["steps"] < 1:
        raise MinorityPromptError(f"--steps must be at least 1, got {settings['steps']}.")
    return settings


def _typed(text: str):
    """Parse a `--set` value: booleans, integers, floats, else the string itself."""
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return text


def method_settings(args: argparse.Namespace, settings: dict, method: str) -> dict:
    """Build the flat settings dict of `method` from the command-line flags."""
    extra = {}
    for item in args.set:
        key, separator, value = item.partition("=")
        if not separator or not key:
            raise MinorityPromptError(f"Invalid --set {item!r}; write KEY=VALUE, e.g. tau1=0.8.")
        extra[key.replace("-", "_")] = _typed(value)
    if method not in ("minority", "diversity"):
        return extra if method != "ddim" else {}

    result = {
        "every": settings["every"],
        "iterations": settings["iterations"],
        "lr": settings["lr"],
        "reuse_optimized": args.reuse_optimized,
        "target": args.target,
        "num_tokens": args.num_tokens,
        "position": args.position,
        "init": settings["init"],
    }
    objective = "minority-naive" if args.naive else args.objective
    if objective is not None:
        result["objective"] = objective
    if method == "minority" and objective in (None, "minority", "minority-naive"):
        result.update(lam=args.lam, s=_s_value(args.s))
        if objective != "minority-naive":
            result.update(
                guided_estimates=args.guided_estimates,
                stop_gradient=args.stop_gradient,
                second_term_optimized=args.second_term_optimized,
            )
    result.update(extra)
    return result


def _write_comparison(writer: RunWriter, entries: list[PromptEntry], methods: list[str]) -> str:
    from PIL import Image

    from .generate import METHOD_LABELS

    records = {record["key"]: record for record in writer.records()}
    rows, labels = [], []
    for prompt_index, entry in enumerate(entries[:COMPARE_MAX_ROWS]):
        keys = [image_key(prompt_index, 0, method) for method in methods]
        if not all(key in records for key in keys):
            continue
        rows.append([Image.open(writer.folder / records[key]["file"]) for key in keys])
        labels.append(entry.text)
    if not rows:
        return ""
    grid = labelled_grid(rows, [METHOD_LABELS.get(m, m) for m in methods], labels)
    path = writer.folder / COMPARE_FILE
    grid.save(path)
    return str(path)


def execute(
    args: argparse.Namespace, entries: list[PromptEntry], rank: int, world_size: int
) -> int:
    settings = resolve_settings(args)
    if args.compare:
        methods = ["ddim", args.method if args.method != "ddim" else "minority"]
    else:
        methods = [args.method]
    per_method = {method: method_settings(args, settings, method) for method in methods}
    for method in methods:
        # Validate every method's settings before loading the model.
        method_kwargs(method, per_method[method], [0, 1], settings["guidance_scale"])
    jobs = plan_jobs(entries, methods, args.images_per_prompt, args.seed, args.file_seeds)
    # Progress bars of several processes overwrite each other on one terminal.
    progress = not args.no_progress and rank == 0

    if world_size > 1:
        # Join the process group now, while the launcher is alive: torchrun hosts the store
        # that joining needs, so ranks that outlive a killed launcher still meet at the end.
        wait_for_all_ranks()

    device = args.device
    if device is None and world_size > 1 and torch.cuda.is_available():
        device = f"cuda:{rank % torch.cuda.device_count()}"
    pipe = load_pipeline(
        args.model, device=device, dtype=DTYPES.get(args.dtype) if args.dtype else None,
        family=args.family,
    )
    preset = PRESETS.get(args.model)
    model_note = f"{args.model} ({preset.description})" if preset else args.model
    if rank == 0:
        print(f"Model: {model_note}")
        print(f"Method: {', '.join(methods)}; solver {settings['solver']}, {settings['steps']} "
              f"steps, guidance {settings['guidance_scale']}; {len(jobs)} images to {args.out}")

    solver_options = {} if args.eta is None else {"eta": args.eta}
    height = args.height or (preset.resolution if preset else None)
    width = args.width or (preset.resolution if preset else None)

    def run_batch(method: str, prompts: list[str], seeds: list[int]):
        from ..solvers.registry import get_solver

        result = run_method(
            method,
            pipe,
            prompts,
            seeds,
            per_method[method],
            solver=get_solver(settings["solver"], **solver_options),
            num_inference_steps=settings["steps"],
            guidance_scale=settings["guidance_scale"],
            negative_prompt=args.negative_prompt,
            height=height,
            width=width,
            progress=not args.no_progress,
        )
        fields = []
        for index in range(len(prompts)):
            entry = {"method_settings": _plain(per_method[method])}
            if result.record is not None:
                entry["optimizer_record"] = result.record.for_sample(index)
            fields.append(entry)
        return result.images, fields

    common = {
        "model": args.model,
        "solver": settings["solver"],
        "eta": args.eta,
        "steps": settings["steps"],
        "guidance_scale": settings["guidance_scale"],
        "negative_prompt": args.negative_prompt,
        "height": height,
        "width": width,
        "minorityprompt_version": __version__,
    }
    sweep_point = getattr(args, "sweep_point", None)
    if sweep_point is not None:
        common["sweep_point"] = sweep_point
    writer = RunWriter(args.out, rank, world_size)
    if rank == 0:
        writer.write_json("run.json", {
            "settings": common,
            "methods": {method: _plain(per_method[method]) for method in methods},
            "prompts": len(entries),
        })
    started = time.perf_counter()
    counts = run_jobs(jobs, writer, run_batch, args.batch_size, common,
                      group_by_prompt=lambda method: method == "diversity", progress=progress)
    elapsed = time.perf_counter() - started

    if world_size > 1:
        logger.info("Rank %d generated %d images; waiting for the other ranks", rank,
                    counts["generated"])
        wait_for_all_ranks()
    if rank == 0:
        if world_size > 1:
            writer.merge_shards()
        # Lines are written after their PNG, so counting lines needs no image decoding.
        total = len({record["key"] for record in writer.records()} & {job.key for job in jobs})
        print(f"Wrote {total} of {len(jobs)} images to {writer.folder} in {elapsed:.1f} s "
              f"({counts['generated']} generated by this process, {counts['skipped']} "
              "already there).")
        if args.compare:
            path = _write_comparison(writer, entries, methods)
            if path:
                print(f"Comparison grid: {path}")
    return 0
