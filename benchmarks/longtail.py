"""Minority generation measured against a known long-tailed distribution.

The embedded model was trained on procedurally generated scenes whose unnamed attributes
(colour, size, position, background) follow known long-tailed probabilities. This script
samples captions with DDIM and with MinorityPrompt from shared seeds, reads every image's
attributes, and reports text accuracy, the exact negative log-probability of the unnamed
attributes, the rate of rare attributes, and the coverage of attribute combinations. It
writes a JSON and a Markdown table and a trade-off plot to `--out`; the last line printed
reads `rare_rate_ratio=X text_accuracy_ratio=Y` (MinorityPrompt at `--lr` over DDIM).

    python benchmarks/longtail.py --quick           # a few minutes on 2 CPU cores
    python benchmarks/longtail.py                   # more captions, samples and a lr sweep
    python benchmarks/longtail.py --all-methods     # baselines and ablations too
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))
from longtail_metrics import RARE_THRESHOLD, score_longtail  # noqa: E402

from minorityprompt import load_pipeline  # noqa: E402
from minorityprompt.longtail.reader import read_scenes  # noqa: E402
from minorityprompt.methods import run_method  # noqa: E402

QUICK_CAPTIONS = ("a circle", "a square", "a triangle", "a red circle", "a blue square",
                  "a small diamond")
FULL_CAPTIONS = QUICK_CAPTIONS + ("a diamond", "a cross", "a ring", "a green cross",
                                  "a yellow ring", "a large triangle", "an orange diamond")

# Baselines and the ablations of the objective, each as (label, method, settings).
EXTRA_METHODS = (
    ("null prompt", "null-prompt", {}),
    ("CADS", "cads", {}),
    ("SGMS", "sgms", {"lr": 0.01}),
    ("naive objective", "minority", {"objective": "minority-naive"}),
    ("+ guided x0", "minority", {"guided_estimates": True}),
    ("+ stop-gradient", "minority", {"stop_gradient": True}),
    ("+ C_v in reconstruction", "minority", {"second_term_optimized": True}),
    ("target: text embedding", "minority", {"target": "text-embedding"}),
    ("prefix token", "minority", {"position": "start"}),
    ("2 tokens", "minority", {"num_tokens": 2}),
    ("4 tokens", "minority", {"num_tokens": 4}),
    ("init: encoder default", "minority", {"init": "encoder-default"}),
    ("init: vocab Gaussian", "minority", {"init": "vocab-gaussian"}),
)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="few captions and samples")
    parser.add_argument("--all-methods", action="store_true",
                        help="also run the baselines and ablations at --lr")
    parser.add_argument("--model", default="embedded", help="model preset or folder")
    parser.add_argument("--samples", type=int, help="images per caption (8 quick, 32 full)")
    parser.add_argument("--steps", type=int, default=50, help="DDIM steps")
    parser.add_argument("--guidance", type=float, default=5.0, help="CFG weight w")
    parser.add_argument("--lr", type=float, default=2e-3, help="MinorityPrompt learning rate")
    parser.add_argument("--init", default="<|endoftext|>",
                        help="init word of the placeholder; the default, CLIP's end-of-text "
                             "token, makes C_v start close to C on a model trained on short "
                             "captions only")
    parser.add_argument("--sweep", default=None,
                        help="comma-separated learning rates (default: none quick, "
                             "1e-3,2e-3,3e-3,1e-2 full)")
    parser.add_argument("--out", default="benchmarks/results", help="output folder")
    return parser.parse_args()


def sample(pipe, method, settings, captions, samples, args):
    """Images of every caption; the seed of sample k of caption c is c * samples + k."""
    images, labels = [], []
    for index, caption in enumerate(tqdm(captions, desc=method, leave=False)):
        seeds = [index * samples + k for k in range(samples)]
        result = run_method(method, pipe, [caption] * samples, seeds, settings,
                            num_inference_steps=args.steps, guidance_scale=args.guidance,
                            output_type="np", progress=False)
        images.append(result.images)
        labels += [caption] * samples
    return np.concatenate(images), labels


def plot(rows, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(5, 4))
    sweep = [row for row in rows if row["method"] == "minority" and row["label"].startswith("lr")]
    sweep.sort(key=lambda row: row["settings"]["lr"])
    axis.plot([r["text_accuracy"] for r in sweep], [r["rare_rate"] for r in sweep], "o-",
              label="MinorityPrompt (lr sweep)")
    for row in sweep:
        axis.annotate(f"{row['settings']['lr']:g}", (row["text_accuracy"], row["rare_rate"]))
    for row in rows:
        if row not in sweep:
            axis.plot(row["text_accuracy"], row["rare_rate"], "s", label=row["label"])
    axis.set_xlabel("text accuracy (higher is better)")
    axis.set_ylabel(f"rare rate, p < {RARE_THRESHOLD} (higher is rarer)")
    axis.legend(fontsize=6)
    figure.tight_layout()
    figure.savefig(path, dpi=150)


def markdown(rows) -> str:
    lines = ["| method | text accuracy ↑ | mean NLL of unnamed (nats) ↑ | rare rate ↑ | "
             "coverage ↑ | s/image |", "|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['label']} | {row['text_accuracy']:.3f} | {row['mean_nll']:.3f} | "
                     f"{row['rare_rate']:.3f} | {row['coverage']:.3f} | "
                     f"{row['seconds_per_image']:.3f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    args = parse_args()
    captions = QUICK_CAPTIONS if args.quick else FULL_CAPTIONS
    samples = args.samples or (8 if args.quick else 32)
    sweep = args.sweep or ("" if args.quick else "1e-3,2e-3,3e-3,1e-2")
    rates = sorted({args.lr, *(float(value) for value in sweep.split(",") if value)})
    pipe = load_pipeline(args.model)

    runs = [("DDIM", "ddim", {})]
    runs += [(f"lr {rate:g}", "minority", {"lr": rate, "init": args.init}) for rate in rates]
    if args.all_methods:
        for label, method, settings in EXTRA_METHODS:
            extra = dict(settings)
            if method == "minority":
                extra.setdefault("lr", args.lr)
                extra.setdefault("init", args.init)
            runs.append((label, method, extra))

    rows = []
    for label, method, settings in tqdm(runs, desc="methods"):
        started = time.perf_counter()
        images, labels = sample(pipe, method, settings, captions, samples, args)
        seconds = (time.perf_counter() - started) / len(images)
        scores = score_longtail(read_scenes(images), labels)
        rows.append({"label": label, "method": method, "settings": settings,
                     "seconds_per_image": seconds, **scores.to_dict()})
        print(f"{label}: text accuracy {scores.text_accuracy:.3f}, mean NLL "
              f"{scores.mean_nll:.3f}, rare rate {scores.rare_rate:.3f}, coverage "
              f"{scores.coverage:.3f}", flush=True)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = "longtail-quick" if args.quick else "longtail"
    report = {"model": args.model, "captions": list(captions), "samples_per_caption": samples,
              "steps": args.steps, "guidance_scale": args.guidance,
              "rare_threshold": RARE_THRESHOLD, "rows": rows}
    (out / f"{name}.json").write_text(json.dumps(report, indent=2))
    (out / f"{name}.md").write_text(markdown(rows))
    plot(rows, out / f"{name}.png")
    print(markdown(rows))

    ddim = rows[0]
    minority = next(row for row in rows if row["label"] == f"lr {args.lr:g}")
    rare_ratio = minority["rare_rate"] / ddim["rare_rate"] if ddim["rare_rate"] else float("inf")
    accuracy_ratio = minority["text_accuracy"] / ddim["text_accuracy"]
    print(f"rare_rate_ratio={rare_ratio:.3f} text_accuracy_ratio={accuracy_ratio:.3f}")


if __name__ == "__main__":
    main()
