"""SDXL-Lightning's few-step sampling: DDIM on trailing timesteps without guidance."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
from torch import Tensor

from .base import SamplingSetup, StepHook
from .ddim import DDIMSolver

logger = logging.getLogger(__name__)

#: Timesteps of the 4-step schedule, which `LightningSolver` produces for 4 steps.
LIGHTNING_4_STEP_TIMESTEPS = (999, 749, 499, 249)


class LightningSolver(DDIMSolver):
    """Deterministic DDIM on `"trailing"` timesteps, for SDXL-Lightning checkpoints.

    With 4 steps and a 1000-step training schedule the timesteps are
    `LIGHTNING_4_STEP_TIMESTEPS`, whatever spacing the model's own config names. The
    distilled checkpoints are sampled without classifier-free guidance, so
    `default_guidance_scale` is 1, and the prompt optimizer is meant to run at every step
    (`optimizer_defaults`). The solver runs any guidance scale it is given but logs a
    warning once per solver for a scale other than 1.

    With 4 steps this equals diffusers' `DDIMScheduler` with `"trailing"` spacing. For step
    counts whose trailing timesteps are unevenly spaced (3 steps: 999, 666, 332) diffusers
    steps to `t - 1000 // steps` instead of the schedule's next timestep, and the two differ.

    A hook's inputs apply to its step's model call only, as in `DDIMSolver`.
    """

    name = "lightning"
    default_guidance_scale = 1.0
    #: PromptOptimizer settings for SDXL-Lightning: every step, K = 3, lr = 1e-3.
    optimizer_defaults = {"every": 1, "iterations": 3, "lr": 1e-3}

    def __init__(self) -> None:
        super().__init__(eta=0.0, timestep_spacing="trailing")
        self._warned_guidance = False

    def sample(
        self,
        setup: SamplingSetup,
        z: Tensor,
        hook: StepHook | None = None,
        generators: Sequence[torch.Generator] | None = None,
        progress: bool = True,
    ) -> Tensor:
        if setup.guidance_scale != 1 and not self._warned_guidance:
            self._warned_guidance = True
            logger.warning(
                "SDXL-Lightning checkpoints are distilled for guidance scale 1, but this run "
                "samples with %s.",
                setup.guidance_scale,
            )
        return super().sample(setup, z, hook, generators, progress)
