"""A user-defined objective: steer generated images toward (or away from) a colour.

The prompt optimizer maximises any function `J(state, cond_v)` that returns one value per
sample and is differentiable with respect to the conditioning. This file defines one, registers
it under the name "colour", and runs it.

Run it on a Stable Diffusion 1.x checkpoint (a local folder or a Hugging Face id):

    python examples/colour_objective.py --model path/to/stable-diffusion-v1-5 --colour 1 0 0

or offline on a tiny random pipeline, whose images are noise but whose objective still rises:

    python examples/colour_objective.py --tiny

From the command line tool, `--plugin examples/colour_objective.py --objective colour` imports
this file, which registers the objective, and then looks it up by name.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import torch

from minorityprompt.core.optimizer import PromptOptimizer
from minorityprompt.errors import MinorityPromptError
from minorityprompt.generation import generate
from minorityprompt.objectives import register_objective

logger = logging.getLogger(__name__)

# Approximate linear maps from the 4 latent channels (rows) to R, G, B (columns), good enough
# for live previews. Values from ComfyUI, comfy/latent_formats.py (`latent_rgb_factors` of the
# SD15 and SDXL latent formats).
LATENT_RGB_FACTORS = {
    "sd15": [
        [0.3512, 0.2297, 0.3227],
        [0.3250, 0.4974, 0.2350],
        [-0.2829, 0.1762, 0.2721],
        [-0.2120, -0.2616, -0.7177],
    ],
    "sdxl": [
        [0.3651, 0.4232, 0.4341],
        [-0.2533, -0.0042, 0.1068],
        [0.1076, 0.1111, -0.0362],
        [-0.3165, -0.2492, -0.2188],
    ],
}


@register_objective("colour")
class ColourObjective:
    """Objective: the lean of the x0 estimate's mean colour from grey toward `colour`.

    `J = sign * <mean_rgb(x0), u>`, where `mean_rgb` averages the latent-to-RGB preview map
    over pixels and `u` is the unit vector from grey toward `colour`. Brightness does not
    count, only hue and saturation. Values are in arbitrary units; Adam's steps do not depend
    on the scale.

    Args:
        colour: Target colour as RGB in [0, 1]; it must not be a grey.
        toward: `True` to steer toward the colour, `False` to steer away from it.
        latent_format: `"sd15"` (SD 1.x and 2.x latents) or `"sdxl"`.
    """

    name = "colour"

    def __init__(
        self,
        colour: tuple[float, float, float] = (1.0, 0.0, 0.0),
        toward: bool = True,
        latent_format: str = "sd15",
    ) -> None:
        if latent_format not in LATENT_RGB_FACTORS:
            raise MinorityPromptError(
                f"Unknown latent format {latent_format!r}; use one of {sorted(LATENT_RGB_FACTORS)}."
            )
        rgb = torch.tensor(colour, dtype=torch.float32)
        if rgb.shape != (3,):
            raise MinorityPromptError(f"colour must be three numbers (R, G, B), got {colour!r}.")
        chroma = rgb - rgb.mean()
        if chroma.norm() < 1e-6:
            raise MinorityPromptError(
                f"colour {colour!r} is a grey, which has no hue to steer toward; pick a colour "
                "with unequal R, G and B, such as (1, 0, 0)."
            )
        self.direction = chroma / chroma.norm()
        self.sign = 1.0 if toward else -1.0
        self.factors = torch.tensor(LATENT_RGB_FACTORS[latent_format], dtype=torch.float32)

    def __call__(self, state, cond_v) -> torch.Tensor:
        # The conditional x0 estimate under C_v, without guidance, as the minority objective uses.
        x0 = state.denoiser.predict(state.z_t, state.timestep, cond_v).x0.float()
        factors = self.factors.to(x0.device)
        mean_rgb = torch.einsum("bchw,cr->br", x0, factors) / (x0.shape[2] * x0.shape[3])
        return self.sign * (mean_rgb @ self.direction.to(x0.device))


def run(
    pipe,
    prompt: str,
    seeds: list[int],
    colour: tuple[float, float, float] = (1.0, 0.0, 0.0),
    toward: bool = True,
    steps: int = 50,
    lr: float = 0.01,
    **generate_options,
):
    """Generate `prompt` once per seed while optimizing the colour objective at every 3rd step."""
    optimizer = PromptOptimizer(
        objective="colour",
        objective_options={"colour": colour, "toward": toward},
        lr=lr,
        every=3,
        iterations=3,
    )
    return generate(
        pipe,
        [prompt] * len(seeds),
        seeds,
        optimizer=optimizer,
        num_inference_steps=steps,
        **generate_options,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="Stable Diffusion 1.x folder or Hugging Face id.")
    source.add_argument("--tiny", action="store_true", help="Use a tiny random pipeline.")
    parser.add_argument("--prompt", default="a photo of a living room")
    parser.add_argument("--colour", type=float, nargs=3, default=(1.0, 0.0, 0.0),
                        metavar=("R", "G", "B"), help="Target colour, RGB in [0, 1].")
    parser.add_argument("--away", action="store_true", help="Steer away from the colour.")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--steps", type=int, default=50, help="Sampling steps.")
    parser.add_argument("--lr", type=float, default=0.01, help="Adam learning rate.")
    parser.add_argument("--output", type=Path, default=Path("colour-samples"))
    args = parser.parse_args(argv)

    if args.tiny:
        from minorityprompt.testing import tiny_sd_pipeline

        pipe = tiny_sd_pipeline("sd15")
    else:
        from diffusers import StableDiffusionPipeline

        pipe = StableDiffusionPipeline.from_pretrained(args.model)
        pipe.to("cuda" if torch.cuda.is_available() else "cpu")

    result = run(pipe, args.prompt, args.seeds, tuple(args.colour), not args.away, args.steps,
                 args.lr)
    args.output.mkdir(parents=True, exist_ok=True)
    for seed, image in zip(args.seeds, result.images, strict=True):
        image.save(args.output / f"seed{seed}.png")
    first = result.record.steps[0].objective
    print(f"colour objective at the first step: {first[0]} -> {first[-1]}")
    print(f"images written to {args.output}")


if __name__ == "__main__":
    main()
