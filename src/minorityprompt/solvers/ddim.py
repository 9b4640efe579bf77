"""DDIM (Song et al. 2021), deterministic or stochastic through `eta`."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from diffusers import DDIMScheduler
from diffusers.utils.torch_utils import randn_tensor
from torch import Tensor

from ..core.state import StepInputs
from ..errors import MinorityPromptError
from .base import SamplingSetup, Solver, StepHook


def ddim_schedule(
    scheduler_config: dict, num_steps: int, timestep_spacing: str | None = None
) -> tuple[Tensor, Tensor]:
    """Timesteps and final alpha of diffusers' `DDIMScheduler` for this model's config."""
    if not isinstance(num_steps, int) or num_steps < 1:
        raise MinorityPromptError(
            f"The number of steps must be a positive integer, got {num_steps!r}."
        )
    overrides = {} if timestep_spacing is None else {"timestep_spacing": timestep_spacing}
    scheduler = DDIMScheduler.from_config(scheduler_config, **overrides)
    scheduler.set_timesteps(num_steps)
    return scheduler.timesteps.clone(), torch.as_tensor(scheduler.final_alpha_cumprod).float()


class DDIMSolver(Solver):
    """DDIM with classifier-free guidance and a step hook.

    Each step moves from `timesteps[i]` to `timesteps[i + 1]` of the actual schedule (or to
    the final alpha after the last), never to `t - T_train // steps`.

    Args:
        eta: 0 for the ODE sampler; 1 for the stochastic sampler whose variance is that of
            DDPM's posterior (DDIM-SDE). The noise comes from `generators`, one per sample,
            drawn after the starting noise exactly as the stock pipeline draws it.
        timestep_spacing: Overrides the config's spacing (`"trailing"` for SDXL-Lightning).

    A hook's inputs apply to this step's model call only; the solver keeps no history of
    model outputs, so an edit never reaches later steps.
    """

    name = "ddim"

    def __init__(self, eta: float = 0.0, timestep_spacing: str | None = None) -> None:
        if eta < 0:
            raise MinorityPromptError(f"eta must be non-negative, got {eta}.")
        self.eta = float(eta)
        self.timestep_spacing = timestep_spacing

    def timesteps(self, scheduler_config: dict, num_steps: int) -> tuple[Tensor, Tensor]:
        return ddim_schedule(scheduler_config, num_steps, self.timestep_spacing)

    def predict(
        self, setup: SamplingSetup, inputs: StepInputs, timestep: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Return `(x0, eps)`: the clean estimate that the step keeps and the noise it re-adds.

        Both come from the classifier-free-guided prediction; CFG++ overrides this.
        """
        prediction = setup.denoiser.predict_guided(
            inputs.z, timestep, inputs.cond, inputs.uncond, setup.guidance_scale
        ).guided
        return prediction.x0, prediction.eps

    def sample(
        self,
        setup: SamplingSetup,
        z: Tensor,
        hook: StepHook | None = None,
        generators: Sequence[torch.Generator] | None = None,
        progress: bool = True,
    ) -> Tensor:
        for step_index in self.progress_bar(setup, progress):
            state = self.step_state(setup, z, step_index)
            inputs = self.step_inputs(state, hook)
            z = inputs.z
            x0, eps = self.predict(setup, inputs, setup.timesteps[step_index])

            alpha_t = state.alpha_t
            alpha_next = setup.alpha_after(step_index, like=alpha_t)
            variance = (1 - alpha_next) / (1 - alpha_t) * (1 - alpha_t / alpha_next)
            std = self.eta * variance ** (0.5)
            direction = (1 - alpha_next - std**2) ** (0.5) * eps
            z = alpha_next ** (0.5) * x0 + direction
            if self.eta > 0:
                noise = randn_tensor(
                    z.shape,
                    generator=list(generators) if generators else None,
                    device=z.device,
                    dtype=z.dtype,
                )
                z = z + std * noise
        return z
