"""The work behind `minorityprompt generate`, once its arguments are read."""

from __future__ import annotations

import argparse
import json
import logging
import time

import torch

from .. import __version__
from ..core.optimizer import PromptOptimizer
from ..core.tokens import TokenSpec
from ..errors import MinorityPromptError
from ..generation import generate
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


def _s_value(text: str):
    if text == "annealed":
        return text
    try:
        return float(text)
    except ValueError:
        raise MinorityPromptError(
            f"Invalid --s {text!r}; use 'annealed' or a ratio of T such as 0.75."
        ) from None


def resolve_settings(args: argparse.Namespace) -> dict:
    """Sampling and optimizer settings: explicit flags, else the preset's, else defaults."""
    preset = PRESETS.get(args.model)
    pick = lambda value, field, fallback: (  # noqa: E731
        value if value is not None else getattr(preset, field) if preset else fallback
    )
    settings = {
        "solver": pick(args.solver, "solver", "ddim"),
        "steps": pick(args.steps, "steps", 50),
        "guidance_scale": pick(args.guidance, "guidance_scale", 7.5),
        "lr": pick(args.lr, "lr", 1e-3),
        "every": pick(args.every, "every", 3),
        "iterations": pick(args.iterations, "iterations", 3),
    }
    if settings["steps"] < 1:
        raise MinorityPromptError(f"--steps must be at least 1, got {settings['steps']}.")
    return settings


def build_optimizer(args: argparse.Namespace, settings: dict) -> PromptOptimizer:
    options = {}
    if args.objective in ("minority", "minority-naive"):
        options = {"lam": args.lam, "s": _s_value(args.s)}
        if args.objective == "minority":
            options.update(
                guided_estimates=args.guided_estimates,
                stop_gradient=args.stop_gradient,
                second_term_optimized=args.second_term_optimized,
            )
    return PromptOptimizer(
        objective=args.objective,
        every=settings["every"],
        iterations=settings["iterations"],
        lr=settings["lr"],
        reuse_optimized=args.reuse_optimized,
        tokens=TokenSpec(num_tokens=args.num_tokens, position=args.position, init=args.init),
        objective_options=options,
    )


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


def execute(args: argparse.Namespace, entries: list[PromptEntry], rank: int, world_size: int) -> int:
    settings = resolve_settings(args)
    methods = ["ddim", "minority"] if args.compare else [args.method]
    optimizer = build_optimizer(args, settings) if "minority" in methods else None
    jobs = plan_jobs(entries, methods, args.images_per_prompt, args.seed, args.file_seeds)

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

        result = generate(
            pipe,
            prompts,
            seeds,
            optimizer=optimizer if method == "minority" else None,
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
            if result.record is None:
                fields.append({"optimizer": None})
            else:
                fields.append({
                    "optimizer": optimizer.settings(),
                    "optimizer_record": result.record.for_sample(index),
                })
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
    writer = RunWriter(args.out, rank, world_size)
    (writer.folder / "run.json").write_text(json.dumps(
        {"settings": common, "methods": methods, "prompts": len(entries),
         "optimizer": optimizer.settings() if optimizer else None}, indent=2))
    started = time.perf_counter()
    counts = run_jobs(jobs, writer, run_batch, args.batch_size, common,
                      progress=not args.no_progress)
    elapsed = time.perf_counter() - started

    if world_size > 1:
        from accelerate import PartialState

        PartialState().wait_for_everyone()
    if rank == 0:
        if world_size > 1:
            writer.merge_shards()
        print(f"Wrote {counts['generated']} images ({counts['skipped']} already there) in "
              f"{elapsed:.1f} s to {writer.folder}")
        if args.compare:
            path = _write_comparison(writer, entries, methods)
            if path:
                print(f"Comparison grid: {path}")
    return 0
