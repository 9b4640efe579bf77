"""`minorityprompt tiny-model`: save a tiny random pipeline for offline tests."""

from __future__ import annotations

import argparse

from ..testing import FAMILIES, save_tiny_pipeline


def add_parser(commands) -> None:
    parser = commands.add_parser(
        "tiny-model",
        help="save a tiny random SD 1.x, SD 2.x or SDXL pipeline to a folder",
        description=(
            "Save a tiny pipeline with random weights, built offline with the same diffusers "
            "and transformers classes as the real models. Load it with --model DIR. Its images "
            "are noise; use it to test objectives, solvers and scripts on a CPU."
        ),
    )
    parser.add_argument("folder", help="destination folder")
    parser.add_argument("--family", choices=FAMILIES, default="sd15", help="model family")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    folder = save_tiny_pipeline(args.folder, args.family, args.seed)
    print(f"Saved a tiny {args.family} pipeline to {folder}")
    return 0
