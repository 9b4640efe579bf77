"""CFG++ on DDIM and on DPM-Solver++(2M).

Chung et al. 2024, "CFG++: Manifold-constrained Classifier Free Guidance for Diffusion
Models". CFG++ takes the clean estimate from the guided prediction and re-noises with the
unconditional one, so guidance weights live in [0, 1]:

    eps_lambda = eps_u + lambda (eps_c - eps_u)
    x0         = (z_t - sqrt(1 - alpha_t) eps_lambda) / sqrt(alpha_t)
    z_next     = sqrt(alpha_next) x0 + sqrt(1 - alpha_next) eps_u              (DDIM, eta = 0)

lambda = 0 is unconditional DDIM. lambda = 1 takes x0 from the conditional prediction alone
and still re-noises with eps_u. The weight lambda is the run's `guidance_scale`, which
these solvers validate, and `default_guidance_scale` (0.6) is the usual value for DDIM.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ..core.conditioning import Conditioning
from ..core.denoiser import Denoiser, DenoiserOutput
from ..core.state import StepInputs
from ..errors import MinorityPromptError
from .base import SamplingSetup, StepHook
from .ddim import DDIMSolver
from .dpmpp import (
    DPMSolverPlusPlus2M,
    LogSNRSchedule,
    convert_with_scales,
    guided_model_outputs,
)

CFGPP_DEFAULT_GUIDANCE = 0.6
MISSING_UNCOND = (
    "CFG++ needs the unconditional branch at every step, but the run has none. Build the "
    "sampling setup with an unconditional conditioning, as generate() does."
)


def check_cfgpp_guidance(guidance_scale: float) -> None:
    """Raise unless `guidance_scale` is a CFG++ weight in [0, 1]."""
    if not 0 <= guidance_scale <= 1:
        raise MinorityPromptError(
            f"Invalid guidance scale {guidance_scale} for CFG++, whose weights lie in [0, 1] "
            f"and are not CFG weights. Pass guidance_scale={CFGPP_DEFAULT_GUIDANCE}, the usual "
            "value, or another value in [0, 1]."
        )


def cfgpp_predictions(
    denoiser: Denoiser,
    z: Tensor,
    timestep: Tensor,
    cond: Conditioning,
    uncond: Conditioning | None,
    guidance_scale: float,
) -> tuple[DenoiserOutput, DenoiserOutput]:
    """Return the lambda-guided prediction and the unconditional one, from one batched call.

    Unlike `Denoiser.predict_guided`, the unconditional pass runs at every weight, lambda = 1
    included, because CFG++ re-noises with it.
    """
    if uncond is None:
        raise MinorityPromptError(MISSING_UNCOND)
    guided, unconditional = guided_model_outputs(
        denoiser, z, timestep, cond, uncond, guidance_scale, need_uncond=True
    )
    return denoiser.convert(guided, z, timestep), denoiser.convert(unconditional, z, timestep)


class CFGppDDIMSolver(DDIMSolver):
    """DDIM with CFG++ guidance and a step hook.

    Each step keeps the x0 of the lambda-guided prediction and re-noises with the
    unconditional eps. With `eta > 0` the step adds fresh noise as stochastic DDIM does,
    `sqrt(1 - alpha_next - std^2)` then scaling eps_u.

    Args:
        eta: 0 for the ODE form of the CFG++ paper; above 0 for stochastic DDIM.
        timestep_spacing: Overrides the config's spacing.

    A hook's inputs apply to this step's model call only, both branches included, because
    the unconditional branch sets the re-noising direction. The solver keeps no history, so
    an edit never reaches later steps.
    """

    name = "cfgpp"
    default_guidance_scale = CFGPP_DEFAULT_GUIDANCE

    def uses_uncond(self, guidance_scale: float) -> bool:
        return True

    def predict(
        self, setup: SamplingSetup, inputs: StepInputs, timestep: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Return `(x0 of the lambda-guided prediction, eps of the unconditional one)`."""
        guided, uncond = cfgpp_predictions(
            setup.denoiser, inputs.z, timestep, inputs.cond, inputs.uncond, setup.guidance_scale
        )
        return guided.x0, uncond.eps

    def sample(
        self,
        setup: SamplingSetup,
        z: Tensor,
        hook: StepHook | None = None,
        generators: Sequence[torch.Generator] | None = None,
        progress: bool = True,
    ) -> Tensor:
        check_cfgpp_guidance(setup.guidance_scale)
        return super().sample(setup, z, hook, generators, progress)


class CFGppDPMSolverPlusPlus2M(DPMSolverPlusPlus2M):
    """DPM-Solver++(2M) with CFG++ guidance and a step hook.

    With D_k the x0 of step k's lambda-guided prediction and eps_u,k its unconditional eps
    (legend in `solvers.dpmpp`):

        first order    z_{k+1} = a_{k+1} D_k + s_{k+1} eps_u,k          (CFG++ DDIM)
        second order   z_{k+1} = first order - a_{k+1} (exp(-h) - 1) (D_k - D_{k-1}) / (2 r)

    The second-order term is DPM-Solver++(2M)'s midpoint term on the history of guided x0
    estimates. Public implementations disagree here: the CFG++ authors' repository
    (`latent_sdxl.py`, `DPMpp2mCFGppSolver`) and ComfyUI's `sample_dpmpp_2m_cfg_pp` use
    `D_k - U_{k-1}`, the guided x0 minus the previous step's unconditional x0, while the
    `sample_dpmpp_2m_sde_cfg_pp` sampler of Stable Diffusion WebUI forks reduces at eta = 0
    to `D_k - D_{k-1}`, as here. The guided difference shrinks with the step (it is
    O(h) along a smooth trajectory), so the term is a second-order correction of the CFG++
    DDIM step. `D_k - U_{k-1}` contains the guidance direction `D - U`, which does not
    shrink, so that term adds guidance of size about h / (2 r) at every step instead.

    Like DPM-Solver++(2M), the history stores D_k: an optimized conditioning at step k also
    reaches step k + 1's update through it. The unconditional eps is used at its own step
    only.
    """

    name = "cfgpp-dpmpp-2m"
    default_guidance_scale = CFGPP_DEFAULT_GUIDANCE

    def uses_uncond(self, guidance_scale: float) -> bool:
        return True

    def predict(
        self, setup: SamplingSetup, inputs: StepInputs, schedule: LogSNRSchedule, k: int
    ) -> tuple[Tensor, Tensor]:
        """Return `(x0 of the lambda-guided prediction, eps of the unconditional one)`."""
        if inputs.uncond is None:
            raise MinorityPromptError(MISSING_UNCOND)
        guided, uncond = guided_model_outputs(
            setup.denoiser, inputs.z, setup.timesteps[k], inputs.cond, inputs.uncond,
            setup.guidance_scale, need_uncond=True,
        )
        prediction_type = setup.denoiser.prediction_type
        signal, noise = schedule.signal[k], schedule.noise[k]
        x0, _ = convert_with_scales(guided, inputs.z, prediction_type, signal, noise)
        _, eps_uncond = convert_with_scales(uncond, inputs.z, prediction_type, signal, noise)
        return x0, eps_uncond

    def first_order(
        self, schedule: LogSNRSchedule, k: int, z: Tensor, x0: Tensor, eps: Tensor
    ) -> Tensor:
        """Take the CFG++ DDIM step: the guided x0 re-noised with the unconditional eps."""
        return schedule.signal[k + 1] * x0 + schedule.noise[k + 1] * eps

    def sample(
        self,
        setup: SamplingSetup,
        z: Tensor,
        hook: StepHook | None = None,
        generators: Sequence[torch.Generator] | None = None,
        progress: bool = True,
    ) -> Tensor:
        check_cfgpp_guidance(setup.guidance_scale)
        return super().sample(setup, z, hook, generators, progress)
