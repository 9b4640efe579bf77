"""Text-to-image sampling on a diffusers pipeline with this library's solvers and optimizer."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from diffusers.utils.torch_utils import randn_tensor
from torch import Tensor

from .core.denoiser import Denoiser
from .core.optimizer import OptimizationRecord, PromptOptimizer
from .core.prompt_encoder import PromptEncoder
from .errors import MinorityPromptError
from .solvers.base import HookChain, SamplingSetup, Solver, StepHook
from .solvers.registry import get_solver

logger = logging.getLogger(__name__)


@dataclass
class GenerationResult:
    """Images and what produced them.

    Attributes:
        images: PIL images, or an array `(batch, height, width, 3)` in [0, 1] for
            `output_type="np"`.
        latents: The final latents before decoding.
        record: The optimizer's record; `None` without optimizer.
        model_evaluations: UNet calls of the whole run, optimization included.
    """

    images: object
    latents: Tensor
    record: OptimizationRecord | None
    model_evaluations: int


def _as_list(value: str | Sequence[str] | None, batch_size: int) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return [value] * batch_size
    return list(value)


def initial_latents(pipe, generators: Sequence[torch.Generator], height: int, width: int) -> Tensor:
    """Starting noise drawn per sample, one generator each.

    Equal to what the stock pipeline draws from the same list of generators, so both paths
    start from the same latents and a sample's noise does not depend on its batch.
    """
    shape = (
        len(generators),
        pipe.unet.config.in_channels,
        height // pipe.vae_scale_factor,
        width // pipe.vae_scale_factor,
    )
    latents = randn_tensor(
        shape, generator=generators, device=pipe.unet.device, dtype=pipe.unet.dtype
    )
    return latents * pipe.scheduler.init_noise_sigma


def decode_latents(pipe, latents: Tensor, output_type: str = "pil"):
    """Decode with the pipeline's VAE and post-process as the stock pipeline does."""
    if output_type == "latent":
        return latents
    vae = pipe.vae
    needs_upcast = vae.dtype == torch.float16 and getattr(vae.config, "force_upcast", False)
    original_dtype = vae.dtype
    if needs_upcast:
        vae.to(torch.float32)
    latents = latents.to(vae.dtype)
    mean = getattr(vae.config, "latents_mean", None)
    std = getattr(vae.config, "latents_std", None)
    with torch.no_grad():
        if mean is not None and std is not None:
            mean_t = torch.tensor(mean).view(1, -1, 1, 1).to(latents)
            std_t = torch.tensor(std).view(1, -1, 1, 1).to(latents)
            latents = latents * std_t / vae.config.scaling_factor + mean_t
        else:
            latents = latents / vae.config.scaling_factor
        image = vae.decode(latents, return_dict=False)[0]
    if needs_upcast:
        vae.to(original_dtype)
    return pipe.image_processor.postprocess(image, output_type=output_type)


def default_size(pipe) -> tuple[int, int]:
    size = pipe.unet.config.sample_size * pipe.vae_scale_factor
    return size, size


def generate(
    pipe,
    prompts: str | Sequence[str],
    seeds: Sequence[int] | int = 0,
    optimizer: PromptOptimizer | None = None,
    solver: str | Solver = "ddim",
    num_inference_steps: int = 50,
    guidance_scale: float = 7.5,
    negative_prompt: str | Sequence[str] | None = None,
    height: int | None = None,
    width: int | None = None,
    output_type: str = "pil",
    progress: bool = True,
    hooks: Sequence[StepHook] = (),
) -> GenerationResult:
    """Sample images for `prompts`, with online prompt optimization if `optimizer` is given.

    Args:
        pipe: A diffusers `StableDiffusionPipeline` or `StableDiffusionXLPipeline`.
        prompts: One prompt per image, or one string for a single image.
        seeds: One seed per image, or a first seed that counts up.
        optimizer: The prompt optimizer; `None` samples with the plain solver.
        solver: A solver name (`"ddim"`, ...) or a `Solver` instance.
        num_inference_steps: Sampling steps.
        guidance_scale: Classifier-free guidance weight; 1 runs no unconditional pass.
        negative_prompt: Negative prompt(s) for the unconditional branch.
        height, width: Image size in pixels; the model's default if `None`.
        output_type: `"pil"`, `"np"`, `"pt"` or `"latent"`.
        progress: Show a progress bar on stderr.
        hooks: Further step hooks, such as the CADS and SGMS baselines. They run after the
            optimizer's hook, in the given order, each seeing the inputs that the previous
            hook returned.
    """
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    if not prompts:
        raise MinorityPromptError("No prompts were given.")
    if any(not isinstance(prompt, str) for prompt in prompts):
        raise MinorityPromptError("Every prompt must be a string.")
    if isinstance(seeds, int):
        seeds = list(range(seeds, seeds + len(prompts)))
    seeds = [int(seed) for seed in seeds]
    if len(seeds) != len(prompts):
        raise MinorityPromptError(f"{len(seeds)} seeds for {len(prompts)} prompts; give one each.")
    default_height, default_width = default_size(pipe)
    height, width = height or default_height, width or default_width
    if height % pipe.vae_scale_factor or width % pipe.vae_scale_factor:
        raise MinorityPromptError(
            f"Image size {height}x{width} must be a multiple of {pipe.vae_scale_factor}."
        )

    solver = get_solver(solver)
    encoder = PromptEncoder.from_pipeline(pipe)
    denoiser = Denoiser.from_pipeline(pipe)
    size = (height, width)

    with torch.no_grad():
        cond = encoder.encode(prompts, size=size)
        uncond = None
        if solver.uses_uncond(guidance_scale):
            uncond = encoder.encode_negative(
                _as_list(negative_prompt, len(prompts)), len(prompts), size
            )
        timesteps, final_alpha = solver.timesteps(pipe.scheduler.config, num_inference_steps)
        setup = SamplingSetup(denoiser, cond, uncond, guidance_scale, timesteps, final_alpha)
        # As in the stock pipeline, each sample's generator draws its starting noise first
        # and then any noise the solver needs.
        generators = [torch.Generator().manual_seed(seed) for seed in seeds]
        latents = initial_latents(pipe, generators, height, width)

        run = None
        if optimizer is not None:
            run = optimizer.start(
                encoder,
                prompts,
                seeds,
                size,
                frozen_modules=[slot.text_encoder for slot in encoder.slots] + [pipe.unet],
            )
        step_hooks = ([run] if run is not None else []) + list(hooks)
        hook = None
        if len(step_hooks) == 1:
            hook = step_hooks[0]
        elif step_hooks:
            hook = HookChain(step_hooks)
        latents = solver.sample(setup, latents, hook, generators, progress)
        images = decode_latents(pipe, latents, output_type)

    return GenerationResult(
        images=images,
        latents=latents,
        record=None if run is None else run.record,
        model_evaluations=denoiser.num_evaluations,
    )
