"""Prompt optimization inside a stock diffusers pipeline through `callback_on_step_end`.

A diffusers pipeline calls `callback_on_step_end` after each scheduler step and applies the
returned tensors from the next step on; no callback runs before step 0. So the callback
optimizes the conditioning of step `i + 1` at the end of step `i`, and `prepare()` optimizes
step 0 before the pipeline starts, returning the prompt embeddings and starting latents that
the pipeline must be called with.

The pipeline hands the callback its prompt embeddings with classifier-free guidance already
concatenated as `[negative; positive]`. The callback replaces only the positive half, and
for SDXL also the positive half of the pooled `add_text_embeds`. Scheduler state
(multistep history, step index) is never touched: an edit changes which conditioning the
next model call receives, nothing else. A multistep scheduler stores that call's output, so
with `DPMSolverMultistepScheduler` an optimized step also reaches the following step's
update through the history.

Tested with `DDIMScheduler` (any eta), `DPMSolverMultistepScheduler` (DPM-Solver++(2M)) and
`EulerDiscreteScheduler`. The first two reproduce `generate()` with the `ddim` (or
`ddim-sde`) and `dpmpp-2m` solvers, bit for bit in float32 on CPU. Stochastic schedulers
draw their noise from the `generator` list that `prepare()` returns, after the starting
noise, as `generate()` does. Pass `eta` to the pipeline call.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence

import torch
from diffusers.callbacks import PipelineCallback
from diffusers.utils.torch_utils import randn_tensor

from ..core.conditioning import Conditioning
from ..core.denoiser import Denoiser
from ..core.optimizer import OptimizationRecord, OptimizationRun, PromptOptimizer
from ..core.prompt_encoder import PromptEncoder
from ..core.state import StepState
from ..errors import MinorityPromptError

logger = logging.getLogger(__name__)


def variance_preserving_latents(scheduler, latents: torch.Tensor, timestep) -> torch.Tensor:
    """Convert a scheduler's latents to `z_t`, the UNet's input scale.

    `scale_model_input` is that conversion: identity for DDIM and DPM-Solver, division by
    `sqrt(sigma^2 + 1)` for Euler-type schedulers that keep latents at noise level sigma.
    """
    return scheduler.scale_model_input(latents, timestep)


def scheduler_alpha(scheduler, denoiser: Denoiser, step_index: int, timestep, like) -> torch.Tensor:
    """`alpha_t` at a step, from the scheduler's own sigmas where it has them."""
    sigmas = getattr(scheduler, "sigmas", None)
    if sigmas is not None and len(sigmas) > step_index and not hasattr(scheduler, "alpha_t"):
        sigma = sigmas[step_index].to(like)
        return 1 / (1 + sigma**2)
    return denoiser.alpha(timestep, like=like)


class MinorityPromptCallback(PipelineCallback):
    """A `PipelineCallback` that runs the prompt optimizer in a stock pipeline.

    Usage:

        callback = MinorityPromptCallback(PromptOptimizer(lr=1e-3))
        kwargs = callback.prepare(pipe, prompts, seeds=[0, 1], num_inference_steps=50)
        images = pipe(**kwargs).images
        callback.record  # steps optimized, objective values, gradient norms

    `prepare` returns every argument the pipeline needs (prompt embeddings, starting latents,
    the callback itself); add others such as `output_type` freely. Works with
    `StableDiffusionPipeline` and `StableDiffusionXLPipeline`.
    """

    def __init__(self, optimizer: PromptOptimizer) -> None:
        super().__init__(cutoff_step_ratio=1.0)
        self.optimizer = optimizer
        self._run: OptimizationRun | None = None
        self._setup: dict | None = None

    @property
    def tensor_inputs(self) -> list[str]:
        inputs = ["latents", "prompt_embeds"]
        if self._setup is not None and self._setup["sdxl"]:
            inputs.append("add_text_embeds")
        return inputs

    @property
    def record(self) -> OptimizationRecord | None:
        return None if self._run is None else self._run.record

    def prepare(
        self,
        pipe,
        prompts: str | Sequence[str],
        seeds: Sequence[int] | int = 0,
        num_inference_steps: int = 50,
        guidance_scale: float = 7.5,
        negative_prompt: str | Sequence[str] | None = None,
        height: int | None = None,
        width: int | None = None,
    ) -> dict:
        """Optimize step 0 and return the keyword arguments for `pipe(**kwargs)`."""
        from ..generation import default_size

        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        if isinstance(seeds, int):
            seeds = list(range(seeds, seeds + len(prompts)))
        if len(seeds) != len(prompts):
            raise MinorityPromptError(
                f"{len(seeds)} seeds for {len(prompts)} prompts; give one each."
            )
        default_height, default_width = default_size(pipe)
        height, width = height or default_height, width or default_width
        size = (height, width)
        use_cfg = guidance_scale > 1
        if isinstance(negative_prompt, str):
            negative_prompt = [negative_prompt] * len(prompts)

        encoder = PromptEncoder.from_pipeline(pipe)
        denoiser = Denoiser.from_pipeline(pipe)
        scheduler = copy.deepcopy(pipe.scheduler)
        scheduler.set_timesteps(num_inference_steps)
        with torch.no_grad():
            cond = encoder.encode(prompts, size=size)
            uncond = (
                encoder.encode_negative(negative_prompt, len(prompts), size) if use_cfg else None
            )
            generators = [torch.Generator().manual_seed(int(seed)) for seed in seeds]
            noise = randn_tensor(
                (
                    len(prompts),
                    pipe.unet.config.in_channels,
                    height // pipe.vae_scale_factor,
                    width // pipe.vae_scale_factor,
                ),
                generator=generators,
                device=pipe.unet.device,
                dtype=pipe.unet.dtype,
            )
        # The pipeline keeps drawing from these generators (stochastic schedulers), after
        # the starting noise, exactly as if it had drawn that noise itself.
        self._run = self.optimizer.start(
            encoder,
            prompts,
            seeds,
            size,
            frozen_modules=[slot.text_encoder for slot in encoder.slots] + [pipe.unet],
        )
        self._setup = {
            "sdxl": encoder.is_sdxl,
            "cond": cond,
            "uncond": uncond,
            "guidance_scale": guidance_scale,
            "denoiser": denoiser,
            "timesteps": scheduler.timesteps.clone(),
        }
        with torch.no_grad():
            first_latents = noise * scheduler.init_noise_sigma
            z0 = variance_preserving_latents(scheduler, first_latents, scheduler.timesteps[0])
            first_cond = self._conditioning(scheduler, 0, z0)

        kwargs = {
            "prompt_embeds": first_cond.prompt_embeds,
            "latents": noise,
            "generator": generators,
            "num_inference_steps": num_inference_steps,
            "guidance_scale": guidance_scale,
            "height": height,
            "width": width,
            "callback_on_step_end": self,
            "callback_on_step_end_tensor_inputs": self.tensor_inputs,
        }
        if use_cfg:
            kwargs["negative_prompt_embeds"] = uncond.prompt_embeds
        if encoder.is_sdxl:
            kwargs["pooled_prompt_embeds"] = first_cond.pooled_prompt_embeds
            if use_cfg:
                kwargs["negative_pooled_prompt_embeds"] = uncond.pooled_prompt_embeds
        return kwargs

    def _conditioning(self, scheduler, step_index: int, z: torch.Tensor) -> Conditioning:
        setup = self._setup
        timesteps = setup["timesteps"]
        timestep = timesteps[step_index]
        state = StepState(
            z_t=z,
            step_index=step_index,
            num_steps=len(timesteps),
            timestep=timestep,
            alpha_t=scheduler_alpha(
                scheduler, setup["denoiser"], step_index, timestep, like=z.new_zeros(())
            ),
            next_timestep=timesteps[step_index + 1] if step_index + 1 < len(timesteps) else None,
            cond=setup["cond"],
            uncond=setup["uncond"],
            guidance_scale=setup["guidance_scale"],
            denoiser=setup["denoiser"],
        )
        return self._run.conditioning_for_step(state)

    def callback_fn(self, pipeline, step_index, timestep, callback_kwargs) -> dict:
        if self._run is None:
            raise MinorityPromptError(
                "MinorityPromptCallback.prepare(pipe, prompts, ...) must be called before the "
                "pipeline, and its returned arguments passed to the pipeline."
            )
        next_index = step_index + 1
        if next_index >= len(self._setup["timesteps"]):
            return {}
        latents = callback_kwargs["latents"]
        z = variance_preserving_latents(
            pipeline.scheduler, latents, self._setup["timesteps"][next_index]
        )
        cond = self._conditioning(pipeline.scheduler, next_index, z)

        outputs = {}
        prompt_embeds = callback_kwargs["prompt_embeds"]
        if pipeline.do_classifier_free_guidance:
            negative, _ = prompt_embeds.chunk(2)
            outputs["prompt_embeds"] = torch.cat([negative, cond.prompt_embeds.to(negative)])
        else:
            outputs["prompt_embeds"] = cond.prompt_embeds.to(prompt_embeds)
        if self._setup["sdxl"]:
            pooled = callback_kwargs["add_text_embeds"]
            if pipeline.do_classifier_free_guidance:
                negative_pooled, _ = pooled.chunk(2)
                outputs["add_text_embeds"] = torch.cat(
                    [negative_pooled, cond.pooled_prompt_embeds.to(negative_pooled)]
                )
            else:
                outputs["add_text_embeds"] = cond.pooled_prompt_embeds.to(pooled)
        return outputs
