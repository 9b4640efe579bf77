"""Shared parts of the solver adapters: the sampling set-up, the step hook and the step state."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Protocol

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..core.conditioning import Conditioning
from ..core.denoiser import Denoiser
from ..core.state import StepInputs, StepState


class StepHook(Protocol):
    """Called by a solver before it evaluates the model at a step.

    `PromptOptimizer.start(...)` returns one; baselines such as CADS and SGMS are others. The
    returned inputs apply to that step's model call only. If a hook returns a new latent `z`,
    the solver continues from it.
    """

    def before_step(self, state: StepState) -> StepInputs: ...


class HookChain:
    """Apply several hooks in order, each seeing the inputs that the previous one returned."""

    def __init__(self, hooks: Sequence[StepHook]) -> None:
        self.hooks = list(hooks)

    def before_step(self, state: StepState) -> StepInputs:
        inputs = StepInputs(state.z_t, state.cond, state.uncond)
        for hook in self.hooks:
            inputs = hook.before_step(
                replace(state, z_t=inputs.z, cond=inputs.cond, uncond=inputs.uncond)
            )
        return inputs


@dataclass
class SamplingSetup:
    """The model, conditioning and schedule of one sampling run.

    Attributes:
        denoiser: The model.
        cond: Base conditioning `C` of the user prompts.
        uncond: Unconditional branch; `None` to run without classifier-free guidance.
        guidance_scale: Guidance weight. Standard CFG uses `eps_u + w (eps_c - eps_u)` and
            skips the unconditional pass at `w = 1`; CFG++ solvers read it as their own
            weight in `[0, 1]`.
        timesteps: Training timesteps of the sampling steps, noisiest first.
        final_alpha: `alpha` that the last step lands on: 1 for schedules that end at clean
            data, `alphas_cumprod[0]` for diffusers DDIM with `set_alpha_to_one=False`.
    """

    denoiser: Denoiser
    cond: Conditioning
    uncond: Conditioning | None
    guidance_scale: float
    timesteps: Tensor
    final_alpha: Tensor

    @property
    def num_steps(self) -> int:
        return int(self.timesteps.shape[0])

    def alpha_after(self, step_index: int, like: Tensor) -> Tensor:
        """`alpha` at the timestep that step `step_index` moves to."""
        if step_index + 1 < self.num_steps:
            return self.denoiser.alpha(self.timesteps[step_index + 1], like=like)
        return self.final_alpha.to(device=like.device, dtype=like.dtype)


class Solver(ABC):
    """A sampler written against `Denoiser`, calling a `StepHook` before each model call."""

    name: str = "solver"
    #: Model evaluations per step without optimization, for cost accounting.
    evaluations_per_step: int = 1

    def uses_uncond(self, guidance_scale: float) -> bool:
        """Return whether the run needs the unconditional branch at this guidance weight."""
        return guidance_scale != 1

    @abstractmethod
    def timesteps(self, scheduler_config: dict, num_steps: int) -> tuple[Tensor, Tensor]:
        """Return the solver's timesteps and final alpha for a model's scheduler config."""

    @abstractmethod
    def sample(
        self,
        setup: SamplingSetup,
        z: Tensor,
        hook: StepHook | None = None,
        generators: Sequence[torch.Generator] | None = None,
        progress: bool = True,
    ) -> Tensor:
        """Run from the noise `z` to the clean latent and return it."""

    @staticmethod
    def step_state(setup: SamplingSetup, z: Tensor, step_index: int) -> StepState:
        timestep = setup.timesteps[step_index]
        next_timestep = (
            setup.timesteps[step_index + 1] if step_index + 1 < setup.num_steps else None
        )
        return StepState(
            z_t=z,
            step_index=step_index,
            num_steps=setup.num_steps,
            timestep=timestep,
            alpha_t=setup.denoiser.alpha(timestep, like=z[:1].flatten()[0]),
            next_timestep=next_timestep,
            cond=setup.cond,
            uncond=setup.uncond,
            guidance_scale=setup.guidance_scale,
            denoiser=setup.denoiser,
        )

    @staticmethod
    def step_inputs(state: StepState, hook: StepHook | None) -> StepInputs:
        if hook is None:
            return StepInputs(state.z_t, state.cond, state.uncond)
        return hook.before_step(state)

    def progress_bar(self, setup: SamplingSetup, progress: bool):
        return tqdm(range(setup.num_steps), desc=self.name, disable=not progress, leave=False)
