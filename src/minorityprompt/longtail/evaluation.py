"""Score generated scene images against their captions and the exact training distribution.

Text accuracy is the fraction of samples whose read attributes equal every value the caption
names. For the attributes a caption leaves out, the empirical frequencies of the read values
can be compared with the exact conditional probabilities of `attribute_marginals`.

Run `python -m minorityprompt.longtail.evaluation MODEL_DIR` to sample a pipeline folder with
DDIM and print these numbers.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import MinorityPromptError
from .distribution import ATTRIBUTE_VALUES, attribute_marginals, parse_caption
from .reader import SceneReading, read_scenes

logger = logging.getLogger(__name__)

DEFAULT_EVALUATION_CAPTIONS = (
    "a circle",
    "a square",
    "a triangle",
    "a diamond",
    "a cross",
    "a ring",
    "a red circle",
    "a blue square",
    "a purple triangle",
    "an orange diamond",
    "a green cross",
    "a yellow ring",
    "a small circle",
    "a large square on the left",
    "a triangle on a white background",
    "a small red diamond at the top on a gray background",
)


@dataclass(frozen=True)
class CaptionScores:
    """Agreement of read attributes with captions over a set of samples.

    `text_accuracy` counts a sample as correct only if every named attribute matches.
    `named_accuracy` maps each attribute to its match rate over the samples that name it.
    """

    text_accuracy: float
    named_accuracy: dict[str, float]
    mean_shape_iou: float
    sample_count: int


def score_captions(readings: Sequence[SceneReading], captions: Sequence[str]) -> CaptionScores:
    """Compare read attributes with the values that each caption names."""
    if len(readings) != len(captions):
        raise MinorityPromptError(
            f"Got {len(readings)} readings for {len(captions)} captions. Pass one caption "
            "per image."
        )
    if not readings:
        raise MinorityPromptError("No readings to score. Pass at least one image.")
    all_match = []
    matches: dict[str, list[bool]] = {}
    for reading, caption in zip(readings, captions, strict=True):
        named = parse_caption(caption)
        results = {
            name: getattr(reading.attributes, name) == value for name, value in named.items()
        }
        all_match.append(all(results.values()))
        for name, result in results.items():
            matches.setdefault(name, []).append(result)
    return CaptionScores(
        text_accuracy=float(np.mean(all_match)),
        named_accuracy={name: float(np.mean(values)) for name, values in matches.items()},
        mean_shape_iou=float(np.mean([reading.shape_iou for reading in readings])),
        sample_count=len(readings),
    )


def unnamed_value_frequencies(
    readings: Sequence[SceneReading], caption: str
) -> dict[str, dict[str, tuple[float, float]]]:
    """Return, per unnamed attribute and value, (empirical frequency, exact probability).

    All readings must come from samples of this one caption.
    """
    if not readings:
        raise MinorityPromptError("No readings to count. Pass at least one image.")
    named = parse_caption(caption)
    exact = attribute_marginals(caption)
    table = {}
    for name, values in ATTRIBUTE_VALUES.items():
        if name in named:
            continue
        read_values = [getattr(reading.attributes, name) for reading in readings]
        table[name] = {
            value: (read_values.count(value) / len(readings), exact[name][value])
            for value in values
        }
    return table


def sample_pipeline(
    pipeline,
    captions: Sequence[str],
    guidance_scale: float = 5.0,
    num_inference_steps: int = 50,
    seed: int = 0,
    batch_size: int = 64,
) -> np.ndarray:
    """Sample one image per caption and return them as (N, 32, 32, 3) floats in [0, 1].

    Batch b uses a torch generator seeded with `seed + b`.
    """
    import torch

    batches = []
    for batch_index, start in enumerate(range(0, len(captions), batch_size)):
        output = pipeline(
            list(captions[start : start + batch_size]),
            num_inference_steps=num_inference_steps,
            guidance_scale=guidance_scale,
            output_type="np",
            generator=torch.Generator().manual_seed(seed + batch_index),
        )
        batches.append(output.images)
    return np.concatenate(batches)


def save_image_grid(images: np.ndarray, path: str | Path, columns: int = 8, scale: int = 3):
    """Save (N, H, W, 3) images in [0, 1] as one PNG grid, enlarged `scale` times."""
    from PIL import Image

    count, height, width, _ = images.shape
    rows = -(-count // columns)
    grid = np.ones((rows * height, columns * width, 3))
    for index, image in enumerate(images):
        row, column = divmod(index, columns)
        grid[row * height : (row + 1) * height, column * width : (column + 1) * width] = image
    picture = Image.fromarray((np.clip(grid, 0, 1) * 255).round().astype(np.uint8))
    picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST).save(path)


def format_report(
    scores: CaptionScores,
    unnamed_caption: str,
    unnamed_samples: int,
    frequencies: dict[str, dict[str, tuple[float, float]]],
) -> str:
    """Format caption scores and unnamed-value frequencies as plain-text lines."""
    named = ", ".join(f"{name} {value:.3f}" for name, value in scores.named_accuracy.items())
    lines = [
        f"text accuracy {scores.text_accuracy:.3f} over {scores.sample_count} samples",
        f"named attribute accuracy: {named}",
        f"mean shape IoU {scores.mean_shape_iou:.3f}",
        f"unnamed attributes of {unnamed_caption!r} over {unnamed_samples} samples, "
        "as read frequency / exact probability:",
    ]
    for name, table in frequencies.items():
        cells = ", ".join(
            f"{value} {read:.3f}/{exact:.3f}" for value, (read, exact) in table.items()
        )
        lines.append(f"  {name}: {cells}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m minorityprompt.longtail.evaluation",
        description="Sample a scene pipeline with DDIM and score the samples with the reader.",
    )
    parser.add_argument("model_dir", type=Path, help="diffusers pipeline folder")
    parser.add_argument("--samples-per-caption", type=int, default=8,
                        help="images per evaluation caption (default 8)")
    parser.add_argument("--guidance-scale", type=float, default=5.0,
                        help="classifier-free guidance scale (default 5.0)")
    parser.add_argument("--steps", type=int, default=50, help="DDIM steps (default 50)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    parser.add_argument("--grid", type=Path, default=None, help="write a PNG grid here")
    parser.add_argument("--unnamed-caption", default="a circle",
                        help="caption whose unnamed attribute frequencies are reported")
    parser.add_argument("--unnamed-samples", type=int, default=256,
                        help="samples of --unnamed-caption (default 256)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    import torch
    from diffusers import StableDiffusionPipeline

    pipeline = StableDiffusionPipeline.from_pretrained(args.model_dir, dtype=torch.float32)
    pipeline.set_progress_bar_config(disable=True)
    captions = [c for c in DEFAULT_EVALUATION_CAPTIONS for _ in range(args.samples_per_caption)]
    images = sample_pipeline(
        pipeline, captions, args.guidance_scale, args.steps, args.seed
    )
    scores = score_captions(read_scenes(images), captions)
    if args.grid is not None:
        save_image_grid(images, args.grid, columns=args.samples_per_caption)

    unnamed_images = sample_pipeline(
        pipeline, [args.unnamed_caption] * args.unnamed_samples, args.guidance_scale,
        args.steps, args.seed + 1000,
    )
    frequencies = unnamed_value_frequencies(read_scenes(unnamed_images), args.unnamed_caption)
    # The report is this command's output, so it goes to stdout rather than to the log.
    print(format_report(scores, args.unnamed_caption, args.unnamed_samples, frequencies))


if __name__ == "__main__":
    main()
