"""The state that every solver hands to the prompt optimizer and its objective at a step."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .conditioning import Conditioning
from .denoiser import Denoiser


@dataclass
class StepState:
    """One sampling step, seen before the solver evaluates the model at it.

    Every solver adapter converts its own variables to this form, so objectives work the same
    under DDIM, DPM-Solver++, CFG++, diffusers callbacks and k-diffusion samplers.

    Attributes:
        z_t: Latent in the variance-preserving parameterization,
            `z_t = sqrt(alpha_t) z_0 + sqrt(1 - alpha_t) eps`.
        step_index: Sampling step, 0 for the first (noisiest) step.
        num_steps: Number of sampling steps in the run.
        timestep: Training timestep of this step, in `[0, T_train)`; fractional under
            k-diffusion samplers.
        alpha_t: `alphas_cumprod` at `timestep`, a 0-d tensor.
        next_timestep: Training timestep of the next step; `None` at the last step.
        cond: Base conditioning `C` of the user prompt.
        uncond: Unconditional (negative prompt) conditioning; `None` when the run uses no
            classifier-free guidance.
        guidance_scale: Classifier-free guidance weight `w` of the run.
        denoiser: The model, giving `(eps, x0)` for any latent, timestep and conditioning.
        noise_generators: One generator per sample for noise that objectives draw, so a
            sample's result does not depend on the batch it is generated in.
    """

    z_t: Tensor
    step_index: int
    num_steps: int
    timestep: Tensor
    alpha_t: Tensor
    next_timestep: Tensor | None
    cond: Conditioning
    uncond: Conditioning | None
    guidance_scale: float
    denoiser: Denoiser
    noise_generators: list[torch.Generator] | None = None

    @property
    def batch_size(self) -> int:
        return self.z_t.shape[0]

    def randn_like_latent(self) -> Tensor:
        """Standard normal noise shaped like `z_t`, drawn per sample from `noise_generators`."""
        if self.noise_generators is None:
            return torch.randn_like(self.z_t)
        if len(self.noise_generators) != self.batch_size:
            raise ValueError(
                f"{len(self.noise_generators)} noise generators for a batch of {self.batch_size}."
            )
        shape = self.z_t.shape[1:]
        draws = [
            torch.randn(shape, generator=generator, device=generator.device, dtype=torch.float32)
            for generator in self.noise_generators
        ]
        return torch.stack(draws).to(device=self.z_t.device, dtype=self.z_t.dtype)


@dataclass
class StepInputs:
    """The inputs on which a solver evaluates the model at one step.

    Attributes:
        z: The latent, variance-preserving; a hook may move it (latent guidance).
        cond: Conditional branch.
        uncond: Unconditional branch; `None` when the run uses no guidance.
    """

    z: Tensor
    cond: Conditioning
    uncond: Conditioning | None
