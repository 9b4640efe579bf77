"""SGMS, self-guided minority sampling (Um & Ye), in latent text-to-image form, as a step hook.

At scheduled steps, Adam moves the latent `z_t` itself to raise the reconstruction loss of
its clean estimate:

    x0     = x0_hat(z_t, t, C)                                  # base prompt, no CFG
    z_s    = sqrt(alpha_s) sg(x0) + sqrt(1 - alpha_s) eps,   eps ~ N(0, I)
    J(z_t) = ||x0 - sg(x0_hat(z_s, s, C))||^2                   # squared L2, summed per sample

with `s = s_ratio * T_train` (0.75 by default). The solver then continues from the moved
latent. The prompt embeddings and the model are never changed: the hook returns the step's
conditioning as it received it.

Differences from the pixel-space original: squared L2 replaces LPIPS, and a fixed Adam learning
rate replaces its decreasing step size, as in the MinorityPrompt paper's comparison.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..core.optimizer import StepSchedule, frozen_parameters
from ..core.seeding import generators_for
from ..core.state import StepInputs, StepState
from ..errors import MinorityPromptError
from ..objectives.minority import squared_distance

logger = logging.getLogger(__name__)


@dataclass
class SGMSStepRecord:
    """One optimized step: per Adam iteration, each sample's `J` before the update."""

    step_index: int
    timestep: float
    objective: list[list[float]] = field(default_factory=list)


class SGMS:
    """The SGMS step hook: Adam ascent of the reconstruction loss on the latent.

    Args:
        lr: Adam learning rate on the latent; 0.005 to 0.01 suit Stable Diffusion.
        every: Optimize every `every` sampling steps, at step indices 0, N, 2N, ...
        iterations: Adam iterations `K` per optimized step, each with a fresh noise draw.
        s_ratio: The re-noising timestep as a fraction of `T_train`, in (0, 1).
        schedule: Overrides `every`: a callable `(step_index, num_steps) -> bool` or a
            collection of step indices.
        seeds: One seed per sample for the noise `eps`, re-seeded at step 0 of every run, so
            a sample's result does not depend on its batch. Without seeds the noise comes
            from torch's global generator.
        betas: Adam's betas.
        adam_eps: Adam's epsilon.

    The Adam state is fresh at every optimized step, and the latent is optimized in fp32.
    `history` records the latest run's optimized steps.
    """

    def __init__(
        self,
        lr: float = 0.005,
        every: int = 3,
        iterations: int = 3,
        s_ratio: float = 0.75,
        schedule: StepSchedule | Collection[int] | None = None,
        seeds: Sequence[int] | None = None,
        betas: tuple[float, float] = (0.9, 0.999),
        adam_eps: float = 1e-8,
    ) -> None:
        if not lr > 0:
            raise MinorityPromptError(f"The SGMS learning rate must be positive, got {lr!r}.")
        if not isinstance(every, int) or every < 1:
            raise MinorityPromptError(f"every (N) must be an integer of at least 1, got {every!r}.")
        if not isinstance(iterations, int) or iterations < 0:
            raise MinorityPromptError(
                f"iterations (K) must be a non-negative integer, got {iterations!r}."
            )
        if not 0 < s_ratio < 1:
            raise MinorityPromptError(f"s_ratio must lie in (0, 1), got {s_ratio}; SGMS uses 0.75.")
        self.lr = float(lr)
        self.every = every
        self.iterations = iterations
        self.s_ratio = float(s_ratio)
        self.schedule = schedule
        self.seeds = None if seeds is None else [int(seed) for seed in seeds]
        self.betas = betas
        self.adam_eps = adam_eps
        self.history: list[SGMSStepRecord] = []
        self._generators: list[torch.Generator] | None = None

    def is_scheduled(self, step_index: int, num_steps: int) -> bool:
        if self.schedule is None:
            return step_index % self.every == 0
        if callable(self.schedule):
            return bool(self.schedule(step_index, num_steps))
        return step_index in self.schedule

    def _noise_like(self, z: Tensor) -> Tensor:
        if self._generators is None:
            return torch.randn(z.shape, dtype=torch.float32).to(z.device)
        if len(self._generators) != z.shape[0]:
            raise MinorityPromptError(
                f"SGMS has {len(self._generators)} seeds for a batch of {z.shape[0]}; give one "
                "seed per sample."
            )
        draws = [
            torch.randn(z.shape[1:], generator=generator, dtype=torch.float32)
            for generator in self._generators
        ]
        return torch.stack(draws).to(z.device)

    def objective(self, state: StepState, z: Tensor) -> Tensor:
        """Per-sample `J(z)` at the step's timestep, differentiable with respect to `z`."""
        denoiser = state.denoiser
        dtype = state.z_t.dtype
        s = torch.tensor(round(self.s_ratio * denoiser.num_train_timesteps))
        x0 = denoiser.predict(z.to(dtype), state.timestep, state.cond).x0
        with torch.no_grad():
            alpha_s = denoiser.alpha(s, like=x0)
            eps = self._noise_like(x0).to(x0.dtype)
            z_s = alpha_s**0.5 * x0.detach() + (1 - alpha_s) ** 0.5 * eps
            x0_s = denoiser.predict(z_s, s, state.cond).x0
        return squared_distance(x0, x0_s)

    def before_step(self, state: StepState) -> StepInputs:
        if state.step_index == 0:
            self.history = []
            self._generators = None
        if self.seeds is not None and self._generators is None:
            self._generators = generators_for(self.seeds, "sgms")
        if self.iterations == 0 or not self.is_scheduled(state.step_index, state.num_steps):
            return StepInputs(state.z_t, state.cond, state.uncond)

        timestep = float(torch.as_tensor(state.timestep).float().mean())
        record = SGMSStepRecord(state.step_index, timestep)
        self.history.append(record)
        z = state.z_t.detach().float().clone().requires_grad_(True)
        adam = torch.optim.Adam([z], lr=self.lr, betas=self.betas, eps=self.adam_eps)
        with torch.enable_grad(), frozen_parameters([state.denoiser.unet]):
            for _ in range(self.iterations):
                objective = self.objective(state, z)
                record.objective.append(objective.detach().cpu().tolist())
                # The sum gives each sample the gradient of its own J, whatever the batch.
                (gradient,) = torch.autograd.grad(-objective.sum(), [z])
                if not torch.isfinite(gradient).all():
                    logger.warning(
                        "Non-finite SGMS gradient at step %d; the latent keeps its value.",
                        state.step_index,
                    )
                    continue
                z.grad = gradient
                adam.step()
                adam.zero_grad(set_to_none=True)
        return StepInputs(z.detach().to(state.z_t.dtype), state.cond, state.uncond)
