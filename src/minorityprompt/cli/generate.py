"""`minorityprompt generate`: sample images for prompts with DDIM or MinorityPrompt."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys
from pathlib import Path

from ..errors import MinorityPromptError
from ..methods import available_methods
from ..models.presets import DEFAULT_MODEL, PRESETS
from ..prompts import PromptEntry, read_prompts

METHOD_LABELS = {
    "ddim": "DDIM",
    "minority": "MinorityPrompt",
    "diversity": "Diversity",
    "null-prompt": "Null prompt",
    "cads": "CADS",
    "sgms": "SGMS",
}


def add_parser(commands) -> None:
    embedded = PRESETS[DEFAULT_MODEL].description
    parser = commands.add_parser(
        "generate",
        help="generate images for prompts",
        description=(
            "Generate images with DDIM or with MinorityPrompt's online prompt optimization. "
            f"The default model, '{DEFAULT_MODEL}', is {embedded}. It knows one shape (circle, "
            "square, triangle, diamond, cross, ring) with a colour, size, position and "
            "background, from captions such as "
            "'a red circle'. Writes PNGs and metadata.jsonl to --out; rerunning the same "
            "command resumes an interrupted run."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("prompt", nargs="*", help="prompts; or give --prompts FILE")
    source = parser.add_argument_group("prompts")
    source.add_argument("--prompts", metavar="FILE",
                        help="prompt file: .txt (one a line), .csv or .tsv with a prompt column "
                             "(MS-COCO captions, PartiPrompts), or a .json list")
    source.add_argument("--limit", type=int, help="use the first N prompts of the file")
    source.add_argument("--shuffle-seed", type=int,
                        help="shuffle the file's prompts with this seed before --limit")
    source.add_argument("--file-seeds", action="store_true",
                        help="seed each prompt with the file's seed column (evaluation_seed)")

    model = parser.add_argument_group("model and sampler")
    model.add_argument("--model", default=DEFAULT_MODEL,
                       help=f"preset ({', '.join(sorted(PRESETS))}), diffusers folder, "
                            ".safetensors file or hub id")
    model.add_argument("--family", choices=("sd15", "sd2", "sdxl"),
                       help="model family of a single checkpoint file (guessed if omitted)")
    model.add_argument("--device", help="torch device; CUDA if available, else CPU")
    model.add_argument("--dtype", choices=("float32", "float16", "bfloat16"),
                       help="weights dtype; fp16 on CUDA, fp32 on CPU if omitted")
    model.add_argument("--method", choices=available_methods(), default="minority",
                       help="sampling method")
    model.add_argument("--compare", action="store_true",
                       help="also run DDIM with shared seeds and write the grid compare.png")
    model.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="a method setting, e.g. --set tau1=0.8 for cads or --set "
                            "s_ratio=0.75 for sgms; repeatable")
    model.add_argument("--solver", help="solver name (default: the model preset's, else ddim)")
    model.add_argument("--eta", type=float, help="DDIM eta for stochastic solvers")
    model.add_argument("--steps", type=int, help="sampling steps (default: the preset's)")
    model.add_argument("--guidance", type=float, help="classifier-free guidance weight w")
    model.add_argument("--negative-prompt", help="negative prompt for the unconditional branch")
    model.add_argument("--height", type=int, help="image height in pixels")
    model.add_argument("--width", type=int, help="image width in pixels")
    model.add_argument("--seed", type=int, default=0, help="seed of the first image")
    model.add_argument("--images-per-prompt", type=int, default=1, help="images per prompt")
    model.add_argument("--batch-size", type=int, default=4, help="images per sampler call")

    optimizer = parser.add_argument_group("prompt optimizer (MinorityPrompt)")
    optimizer.add_argument("--objective",
                           help="registered objective name or weighted sum such as "
                                "'0.5*minority+diversity' (default: the method's own)")
    optimizer.add_argument("--naive", action="store_true",
                           help="ablation: the naive objective (all three flaws below)")
    optimizer.add_argument("--target", choices=("token", "text-embedding", "null-text"),
                           default="token", help="what the optimizer updates")
    optimizer.add_argument("--plugin", action="append", default=[], metavar="MODULE_OR_FILE",
                           help="import a module or .py file that registers objectives")
    optimizer.add_argument("--lr", type=float, help="Adam learning rate (default: the preset's)")
    optimizer.add_argument("--every", type=int, help="optimize every N sampling steps")
    optimizer.add_argument("--iterations", type=int, help="Adam iterations K per optimized step")
    optimizer.add_argument("--lam", type=float, default=1.0,
                           help="weight lambda of the second term")
    optimizer.add_argument("--s", default="annealed",
                           help="re-noising timestep: 'annealed' (T - t) or a ratio of T "
                                "such as 0.75")
    optimizer.add_argument("--num-tokens", type=int, default=1, help="learnable tokens per prompt")
    optimizer.add_argument("--position", choices=("end", "start"), default="end",
                           help="where the placeholder goes in the prompt")
    optimizer.add_argument("--init",
                           help="init word, 'encoder-default' or 'vocab-gaussian' (default: "
                                "the preset's, else 'cool')")
    optimizer.add_argument("--reuse-optimized", action="store_true",
                           help="use the last optimized prompt on steps that are not optimized")
    optimizer.add_argument("--guided-estimates", action="store_true",
                           help="ablation: CFG x0 estimates in the objective")
    optimizer.add_argument("--stop-gradient", action="store_true",
                           help="ablation: stop the gradient of the second term")
    optimizer.add_argument("--second-term-optimized", action="store_true",
                           help="ablation: condition the reconstruction on C_v")

    output = parser.add_argument_group("output")
    output.add_argument("--out", default="outputs", help="output folder")
    output.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.set_defaults(run=run)


def load_plugin(spec: str) -> None:
    """Import a module by dotted name or a Python file by path, for its registrations."""
    path = Path(spec)
    if path.suffix == ".py":
        if not path.is_file():
            raise MinorityPromptError(f"Plugin file {spec!r} does not exist.")
        module_spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[path.stem] = module
        module_spec.loader.exec_module(module)
        return
    try:
        importlib.import_module(spec)
    except ImportError as error:
        raise MinorityPromptError(f"Could not import plugin module {spec!r}: {error}") from error


def _entries(args: argparse.Namespace) -> list[PromptEntry]:
    if args.prompts and args.prompt:
        raise MinorityPromptError("Give prompts as arguments or with --prompts FILE, not both.")
    if args.prompts:
        return read_prompts(args.prompts, limit=args.limit, shuffle_seed=args.shuffle_seed)
    prompts = [prompt.strip() for prompt in args.prompt]
    if not prompts:
        raise MinorityPromptError(
            "No prompt given; pass prompts as arguments (minorityprompt generate \"a red "
            "circle\") or a file with --prompts."
        )
    if any(not prompt for prompt in prompts):
        raise MinorityPromptError("A prompt is empty; every prompt needs text.")
    return [PromptEntry(prompt) for prompt in prompts]


def _distributed() -> tuple[int, int]:
    """`(rank, world_size)` from the variables that `accelerate launch` and torchrun set."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def run(args: argparse.Namespace) -> int:
    from .generate_run import execute

    for plugin in args.plugin:
        load_plugin(plugin)
    entries = _entries(args)
    rank, world_size = _distributed()
    return execute(args, entries, rank, world_size)
