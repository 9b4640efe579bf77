"""`minorityprompt evaluate`: metrics per method and sweep point of generated runs."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..evaluation import (
    PLOT_FILE,
    EvaluationOptions,
    LikelihoodSettings,
    evaluate_runs,
    markdown_table,
    parse_metrics,
    parse_plot,
    tradeoff_plot,
    write_report,
)
from ..evaluation.report import JSON_FILE, notes
from ..evaluation.selection import METRICS
from ..metrics.features import DEFAULT_CLIP, DEFAULT_DINO
from ..metrics.reward_models import IMAGE_REWARD_MODEL, PICKSCORE_MODEL, PICKSCORE_PROCESSOR


def add_parser(commands) -> None:
    parser = commands.add_parser(
        "evaluate",
        help="compute metrics of generated runs",
        description=(
            "Compute metrics of the images in folders written by `minorityprompt generate` or "
            "`sweep`, one table row per method and sweep point. Writes evaluation.json and "
            "evaluation.md (and tradeoff.png with --plot) and prints the table. Values of "
            "groups whose images and settings did not change are reused from an earlier "
            "evaluation.json."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("runs", nargs="+", metavar="RUN",
                        help="run folder, or a folder of run folders such as a sweep")
    parser.add_argument("--out", help="folder for the results (default: the first RUN)")
    add_evaluation_arguments(parser, model_options=True)
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.set_defaults(run=run)


def add_evaluation_arguments(parser: argparse.ArgumentParser, model_options: bool) -> None:
    """Add the metric options; `model_options` adds --model, --family, --device and --dtype,
    which `sweep` takes from the generate options instead."""
    metrics = parser.add_argument_group("metrics")
    metrics.add_argument(
        "--metrics",
        help=f"comma-separated metrics from {','.join(METRICS)}; default: each metric whose "
             "inputs (reference, model weights on disk, 2+ images per prompt) are present")
    metrics.add_argument("--plot", metavar="X,Y",
                         help="draw Y against X per method across sweep points into "
                              f"{PLOT_FILE}, e.g. clip_score,likelihood")
    metrics.add_argument("--reference", metavar="PATH",
                         help="real images for prdc and rarity: a folder of images or a "
                              ".npy/.pt file of (N, D) features from the --features model")
    metrics.add_argument("--features", choices=("clip", "dino"), default="clip",
                         help="feature space of prdc and rarity")
    metrics.add_argument("--save-reference-features", metavar="FILE",
                         help="write the reference features (.npy or .pt) for later runs")
    metrics.add_argument("--nearest-k", type=int, default=5, help="k of prdc")
    metrics.add_argument("--rarity-k", type=int, default=3, help="k of the rarity score")
    option = "--batch-size" if model_options else "--metric-batch-size"
    metrics.add_argument(option, dest="metric_batch_size", type=int, default=32, metavar="N",
                         help="images per forward pass of the metric models")
    metrics.add_argument("--recompute", action="store_true",
                         help="ignore values stored in an earlier evaluation.json")

    weights = parser.add_argument_group("metric models (local folder or hub id)")
    weights.add_argument("--clip", help=f"CLIP model of clip_score [{DEFAULT_CLIP}]")
    weights.add_argument("--dino", help=f"DINO model of in_batch_similarity [{DEFAULT_DINO}]")
    weights.add_argument("--pickscore", help=f"PickScore model [{PICKSCORE_MODEL}]")
    weights.add_argument("--pickscore-processor",
                         help=f"processor of the PickScore model [{PICKSCORE_PROCESSOR}]")
    weights.add_argument("--image-reward",
                         help=f"ImageReward checkpoint file or folder [{IMAGE_REWARD_MODEL}]")

    likelihood = parser.add_argument_group("likelihood (probability-flow ODE on VAE latents)")
    if model_options:
        likelihood.add_argument("--model",
                                help="diffusion model of the likelihood; default: each run's "
                                     "model from its metadata")
        likelihood.add_argument("--family", choices=("sd15", "sd2", "sdxl"),
                                help="model family of a single checkpoint file")
        likelihood.add_argument("--device", help="torch device; CUDA if available, else CPU")
        likelihood.add_argument("--dtype", choices=("float32", "float16", "bfloat16"),
                                help="weights dtype of the diffusion model [float32]")
    defaults = LikelihoodSettings()
    likelihood.add_argument("--likelihood-method", choices=("RK45", "RK23", "DOP853", "rk4"),
                            default=defaults.method,
                            help="ODE solver: adaptive scipy methods or fixed-step rk4")
    likelihood.add_argument("--likelihood-rtol", type=float, default=defaults.rtol,
                            help="relative tolerance of the adaptive solvers")
    likelihood.add_argument("--likelihood-atol", type=float, default=defaults.atol,
                            help="absolute tolerance of the adaptive solvers")
    likelihood.add_argument("--likelihood-steps", type=int, default=defaults.num_steps,
                            help="steps of rk4")
    likelihood.add_argument("--likelihood-probes", type=int, default=defaults.num_probes,
                            help="Hutchinson probes per sample for the divergence")
    likelihood.add_argument("--likelihood-batch-size", type=int, default=defaults.batch_size,
                            help="latents integrated together")
    likelihood.add_argument("--likelihood-seed", type=int, default=defaults.seed,
                            help="seed of the probe vectors")


def options_from_args(
    args: argparse.Namespace, model: str | None, dtype: str | None
) -> EvaluationOptions:
    """Build the options; `model` and `dtype` are those of the likelihood."""
    return EvaluationOptions(
        metrics=parse_metrics(args.metrics) if args.metrics is not None else None,
        reference=args.reference,
        features=args.features,
        clip=args.clip,
        dino=args.dino,
        pickscore=args.pickscore,
        pickscore_processor=args.pickscore_processor,
        image_reward=args.image_reward,
        model=model,
        family=args.family,
        device=args.device,
        dtype=dtype,
        batch_size=args.metric_batch_size,
        nearest_k=args.nearest_k,
        rarity_k=args.rarity_k,
        likelihood=LikelihoodSettings(
            method=args.likelihood_method,
            rtol=args.likelihood_rtol,
            atol=args.likelihood_atol,
            num_steps=args.likelihood_steps,
            num_probes=args.likelihood_probes,
            batch_size=args.likelihood_batch_size,
            seed=args.likelihood_seed,
        ),
        save_reference_features=args.save_reference_features,
        recompute=args.recompute,
        progress=not args.no_progress,
    )


def evaluate_and_report(
    args: argparse.Namespace,
    runs: list[str],
    out: Path,
    options: EvaluationOptions,
    default_plot: str | None = None,
) -> int:
    """Evaluate `runs`, write the report files to `out` and print the table.

    `--plot` makes its two metrics required. Without it, `default_plot` ("X,Y") is drawn
    only if both of its metrics were computed.
    """
    plot = parse_plot(args.plot) if args.plot else None
    required = [axis[0] for axis in plot] if plot else []
    if not options.progress:
        import diffusers
        import transformers

        transformers.utils.logging.disable_progress_bar()
        diffusers.utils.logging.disable_progress_bar()
    evaluation = evaluate_runs(runs, options, stored=out / JSON_FILE, required=required)
    json_path, markdown_path = write_report(evaluation, out)

    print(markdown_table(evaluation))
    print()
    for line in notes(evaluation):
        print(line)
    print(f"Wrote {json_path} and {markdown_path}")

    if plot is None and default_plot is not None:
        plot = parse_plot(default_plot)
        missing = [metric for metric, _ in plot if metric not in evaluation.metrics]
        if missing:
            print(f"No trade-off plot: {', '.join(missing)} not computed; choose axes with "
                  "--plot X,Y.")
            plot = None
    if plot:
        (_, x_column), (_, y_column) = plot
        plot_path = tradeoff_plot(evaluation, x_column, y_column, out / PLOT_FILE)
        print(f"Trade-off plot: {plot_path}")
    return 0


def run(args: argparse.Namespace) -> int:
    out = Path(args.out) if args.out else Path(args.runs[0])
    options = options_from_args(args, model=args.model, dtype=args.dtype)
    return evaluate_and_report(args, args.runs, out, options)
