"""DPM-Solver++(2M): the multistep second-order solver in data prediction.

Lu et al. 2022, "DPM-Solver++: Fast Solver for Guided Sampling of Diffusion Probabilistic
Models", Algorithm 2 (multistep, midpoint form).

Legend (variance-preserving latents, step k goes from timestep t_k to t_{k+1}):

    sigma_k    sqrt((1 - alpha_k) / alpha_k) at t_k; 0 after the last step (the data end)
    a_k        sqrt(alpha_k) = 1 / sqrt(sigma_k^2 + 1), the signal scale
    s_k        sqrt(1 - alpha_k) = sigma_k a_k, the noise scale
    lambda_k   log(a_k / s_k), the half log-SNR; +inf at the data end
    h          lambda_{k+1} - lambda_k, the step length in lambda
    r          h_{k-1} / h, the previous step length relative to this one
    D_k        the guided x0 estimate of step k, kept as history for step k + 1

    first order    z_{k+1} = (s_{k+1} / s_k) z_k - a_{k+1} (exp(-h) - 1) D_k
    second order   z_{k+1} = first order - a_{k+1} (exp(-h) - 1) (D_k - D_{k-1}) / (2 r)

The coefficients are evaluated in the order diffusers evaluates them, `exp(-h) - 1` rather
than `expm1(-h)`, which keeps the two bit-identical in float32. The relative rounding error
of `exp(-h) - 1` is about 6e-8 / h, small for the step lengths of practical schedules.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from diffusers import DPMSolverMultistepScheduler
from torch import Tensor

from ..core.conditioning import Conditioning
from ..core.denoiser import Denoiser
from ..core.state import StepInputs
from ..errors import MinorityPromptError
from .base import SamplingSetup, Solver, StepHook

#: Scheduler settings that make diffusers' DPMSolverMultistepScheduler the solver below,
#: whatever DPM-specific settings the model's own scheduler config carries.
DPMPP_2M_CONFIG = {
    "algorithm_type": "dpmsolver++",
    "solver_order": 2,
    "solver_type": "midpoint",
    "lower_order_final": True,
    "euler_at_final": False,
    "final_sigmas_type": "zero",
    "use_karras_sigmas": False,
    "use_exponential_sigmas": False,
    "use_beta_sigmas": False,
    "use_lu_lambdas": False,
    "use_flow_sigmas": False,
    "thresholding": False,
}


def dpmpp_schedule(scheduler_config: dict, num_steps: int) -> tuple[Tensor, Tensor]:
    """Timesteps of diffusers' `DPMSolverMultistepScheduler` for this config, and final alpha 1.

    The timestep spacing comes from the config. Note that diffusers' DPM-Solver spaces
    `"leading"` timesteps by `T_train // (steps + 1)`, unlike DDIM's `T_train // steps`.
    """
    if not isinstance(num_steps, int) or num_steps < 1:
        raise MinorityPromptError(
            f"The number of steps must be a positive integer, got {num_steps!r}."
        )
    scheduler = DPMSolverMultistepScheduler.from_config(scheduler_config, **DPMPP_2M_CONFIG)
    scheduler.set_timesteps(num_steps)
    return scheduler.timesteps.clone(), torch.tensor(1.0)


@dataclass(frozen=True)
class LogSNRSchedule:
    """Signal scales, noise scales and half log-SNRs of the steps, the data end appended.

    All tensors have `num_steps + 1` entries, in float32.
    """

    sigma: Tensor
    signal: Tensor
    noise: Tensor
    half_log_snr: Tensor

    @classmethod
    def from_setup(cls, setup: SamplingSetup, device: torch.device) -> LogSNRSchedule:
        """Build the schedule of `setup.timesteps`, ending at sigma = 0.

        Sigma is computed from `alphas_cumprod` with the same operations as diffusers'
        `DPMSolverMultistepScheduler`, so both use the same float32 values.
        """
        alpha = setup.denoiser.alpha(setup.timesteps, like=torch.zeros(1))
        sigma = ((1 - alpha) / alpha) ** 0.5
        sigma = torch.cat([sigma.flatten().float(), sigma.new_zeros(1)]).to(device)
        signal = 1 / (sigma**2 + 1) ** 0.5
        noise = sigma * signal
        return cls(sigma, signal, noise, torch.log(signal) - torch.log(noise))


def guided_model_outputs(
    denoiser: Denoiser,
    z: Tensor,
    timestep: Tensor,
    cond: Conditioning,
    uncond: Conditioning | None,
    guidance_scale: float,
    need_uncond: bool = False,
) -> tuple[Tensor, Tensor | None]:
    """Raw model outputs: the guided one, and the unconditional one where it was computed.

    Both branches run in one batched call, unconditional first, as in
    `Denoiser.predict_guided`. Without `need_uncond`, guidance scale 1 runs the conditional
    branch alone.
    """
    if uncond is None or (guidance_scale == 1 and not need_uncond):
        return denoiser.model_output(z, timestep, cond), None
    output = denoiser.model_output(torch.cat([z, z]), timestep, Conditioning.cat([uncond, cond]))
    output_uncond, output_cond = output.chunk(2)
    return output_uncond + guidance_scale * (output_cond - output_uncond), output_uncond


def convert_with_scales(
    output: Tensor, z: Tensor, prediction_type: str, signal: Tensor, noise: Tensor
) -> tuple[Tensor, Tensor]:
    """Convert a raw model output to `(x0, eps)`, given the step's signal and noise scales.

    This is the conversion of `Denoiser.convert`, with `a` and `s` derived from sigma as
    diffusers' `DPMSolverMultistepScheduler` derives them. They differ from
    `sqrt(alphas_cumprod)` in the last bit, and using them keeps the solver bit-identical to
    that scheduler.
    """
    if prediction_type == "epsilon":
        return (z - noise * output) / signal, output
    if prediction_type == "v_prediction":
        return signal * z - noise * output, signal * output + noise * z
    return output, (z - signal * output) / noise


class DPMSolverPlusPlus2M(Solver):
    """DPM-Solver++(2M) with classifier-free guidance and a step hook.

    Equals diffusers' `DPMSolverMultistepScheduler(algorithm_type="dpmsolver++",
    solver_order=2)` built from the same config, bit for bit through the stock pipeline in
    float32 on CPU (diffusers 0.42, tested for epsilon and v-prediction).

    The first step and the last are first order. The first has no history, and the last
    goes to sigma = 0, where the first-order step returns the x0 estimate itself (diffusers
    does the same with `final_sigmas_type="zero"`). So sampling ends exactly at the data
    end, whatever the number of steps.

    The hook runs before step k's model call. Its conditioning determines D_k, the x0 that
    step k uses and that the multistep history stores: step k + 1's second-order term uses
    D_k again. So an optimized conditioning at step k also reaches the update of step
    k + 1, through the stored x0, even when step k + 1 runs on the base prompt. A latent
    that the hook moves becomes z_k for both the model call and the update; the history
    is not recomputed.
    """

    name = "dpmpp-2m"

    def timesteps(self, scheduler_config: dict, num_steps: int) -> tuple[Tensor, Tensor]:
        return dpmpp_schedule(scheduler_config, num_steps)

    def predict(
        self, setup: SamplingSetup, inputs: StepInputs, schedule: LogSNRSchedule, k: int
    ) -> tuple[Tensor, Tensor]:
        """Return `(x0, eps)` of step k's classifier-free-guided prediction.

        `x0` is D_k, the data term and the history. `eps` is the noise that a CFG++ step
        re-adds. This solver's first-order step keeps z_k instead and ignores `eps`.
        """
        output, _ = guided_model_outputs(
            setup.denoiser, inputs.z, setup.timesteps[k], inputs.cond, inputs.uncond,
            setup.guidance_scale,
        )
        return convert_with_scales(
            output, inputs.z, setup.denoiser.prediction_type, schedule.signal[k],
            schedule.noise[k],
        )

    def first_order(
        self, schedule: LogSNRSchedule, k: int, z: Tensor, x0: Tensor, eps: Tensor
    ) -> Tensor:
        """Take the first-order step from k to k + 1 (DDIM, exponential-integrator form)."""
        h = schedule.half_log_snr[k + 1] - schedule.half_log_snr[k]
        ratio = schedule.noise[k + 1] / schedule.noise[k]
        return ratio * z - (schedule.signal[k + 1] * (torch.exp(-h) - 1.0)) * x0

    def sample(
        self,
        setup: SamplingSetup,
        z: Tensor,
        hook: StepHook | None = None,
        generators: Sequence[torch.Generator] | None = None,
        progress: bool = True,
    ) -> Tensor:
        schedule = LogSNRSchedule.from_setup(setup, z.device)
        x0_previous: Tensor | None = None
        for k in self.progress_bar(setup, progress):
            state = self.step_state(setup, z, k)
            inputs = self.step_inputs(state, hook)
            z = inputs.z
            x0, eps = self.predict(setup, inputs, schedule, k)

            # Update in float32, as diffusers does, and return to the latent dtype.
            z32, x0_32, eps32 = z.float(), x0.float(), eps.float()
            if schedule.sigma[k + 1] == 0:
                # The first-order step to sigma = 0 returns the x0 estimate.
                z_next = x0_32
            else:
                z_next = self.first_order(schedule, k, z32, x0_32, eps32)
                if x0_previous is not None:
                    z_next = z_next + self.second_order_term(schedule, k, x0_32, x0_previous)
            z = z_next.to(z.dtype)
            x0_previous = x0_32
        return z

    @staticmethod
    def second_order_term(
        schedule: LogSNRSchedule, k: int, x0: Tensor, x0_previous: Tensor
    ) -> Tensor:
        """Return the midpoint correction `-a_{k+1} (exp(-h) - 1) (D_k - D_{k-1}) / (2 r)`."""
        lam = schedule.half_log_snr
        h = lam[k + 1] - lam[k]
        r = (lam[k] - lam[k - 1]) / h
        difference = (1.0 / r) * (x0 - x0_previous)
        return -0.5 * (schedule.signal[k + 1] * (torch.exp(-h) - 1.0)) * difference
