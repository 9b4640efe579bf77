"""The minority objective: the reconstruction loss of the x0 estimate, tied to its likelihood.

Legend:

    z0_v   x0_hat(z_t, t, C_v), the clean estimate under the optimized prompt
    s      the re-noising timestep
    z_s    sqrt(alpha_s) z0_v + sqrt(1 - alpha_s) eps, eps ~ N(0, I)
    z0_s   x0_hat(z_s, s, C), the reconstruction under the base prompt

    J = ||z0_v - sg(z0_s)||^2 + lambda ||sg(z0_v) - z0_s||^2

With lambda = 1 the gradient of J equals the gradient of ||z0_v - z0_s||^2. Weighting J by
alpha_s / (1 - alpha_s) and summing over s gives sum_s E||eps - eps_theta(z_s, s, C)||^2, the
denoising form of the negative ELBO of z0_v under the base prompt, so ascending J lowers the
likelihood of the sample while the prompt C keeps its meaning.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ..core.conditioning import Conditioning
from ..core.state import StepState
from ..errors import MinorityPromptError
from .base import register_objective

SSchedule = Callable[[Tensor, int], Tensor]


def annealed_s(timestep: Tensor, num_train_timesteps: int) -> Tensor:
    """`s = T_train - t`, clipped to `[1, T_train - 1]`.

    Noisy early steps re-noise little and late steps re-noise a lot.
    """
    return (num_train_timesteps - timestep).clamp(1, num_train_timesteps - 1)


def fixed_ratio_s(ratio: float) -> SSchedule:
    """`s = ratio * T_train` at every step (0.75 in SGMS)."""
    if not 0 < ratio < 1:
        raise MinorityPromptError(f"The s ratio must lie in (0, 1), got {ratio}.")

    def schedule(timestep: Tensor, num_train_timesteps: int) -> Tensor:
        return torch.full_like(timestep, round(ratio * num_train_timesteps))

    return schedule


def resolve_s_schedule(s: str | float | SSchedule) -> SSchedule:
    """Accept `"annealed"`, a float ratio in (0, 1), or a callable `(t, T_train) -> s`."""
    if s == "annealed":
        return annealed_s
    if isinstance(s, (int, float)) and not isinstance(s, bool):
        return fixed_ratio_s(float(s))
    if callable(s):
        return s
    raise MinorityPromptError(
        f"Invalid s schedule {s!r}; use 'annealed', a ratio in (0, 1) such as 0.75, or a "
        "callable (t, T_train) -> s."
    )


def squared_distance(a: Tensor, b: Tensor) -> Tensor:
    """Squared L2 distance per sample, summed over every non-batch dimension.

    Computed in fp32 at least (fp16 and bf16 inputs are upcast) and in fp64 for fp64 inputs.
    """
    dtype = torch.promote_types(a.dtype, torch.float32)
    return (a.to(dtype) - b.to(dtype)).pow(2).flatten(1).sum(dim=1)


class MinorityObjective:
    """The minority objective `J` with the ablation switches of the naive form.

    Args:
        lam: Weight `lambda` of the second term.
        s: Re-noising timestep: `"annealed"` (`s = T_train - t`), a ratio of `T_train`, or a
            callable `(t, T_train) -> s`.
        guided_estimates: Use classifier-free-guided x0 estimates in both terms (ablation).
        stop_gradient: Stop the gradient through `z0_s`, so only the first term contributes
            (ablation).
        second_term_optimized: Condition the reconstruction on `C_v` instead of `C` (ablation).
        num_noise_draws: Noise draws `eps` averaged per evaluation.

    `MinorityObjective.naive()` turns on all three ablations.
    """

    name = "minority"

    def __init__(
        self,
        lam: float = 1.0,
        s: str | float | SSchedule = "annealed",
        guided_estimates: bool = False,
        stop_gradient: bool = False,
        second_term_optimized: bool = False,
        num_noise_draws: int = 1,
    ) -> None:
        if lam < 0:
            raise MinorityPromptError(f"lambda must be non-negative, got {lam}.")
        if num_noise_draws < 1:
            raise MinorityPromptError(f"num_noise_draws must be at least 1, got {num_noise_draws}.")
        self.lam = float(lam)
        self.s_schedule = resolve_s_schedule(s)
        self.guided_estimates = guided_estimates
        self.stop_gradient = stop_gradient
        self.second_term_optimized = second_term_optimized
        self.num_noise_draws = num_noise_draws

    @classmethod
    def naive(cls, **kwargs) -> MinorityObjective:
        """Build the naive objective: guided x0, stop-gradient and `C_v` in the second term."""
        return cls(guided_estimates=True, stop_gradient=True, second_term_optimized=True, **kwargs)

    def _x0(self, state: StepState, z: Tensor, timestep: Tensor, cond: Conditioning) -> Tensor:
        denoiser = state.denoiser
        if self.guided_estimates and state.uncond is not None:
            return denoiser.predict_guided(
                z, timestep, cond, state.uncond, state.guidance_scale
            ).guided.x0
        return denoiser.predict(z, timestep, cond).x0

    def __call__(self, state: StepState, cond_v: Conditioning) -> Tensor:
        denoiser = state.denoiser
        timestep = torch.as_tensor(state.timestep)
        s = self.s_schedule(timestep, denoiser.num_train_timesteps)

        z0_v = self._x0(state, state.z_t, timestep, cond_v)
        alpha_s = denoiser.alpha(s, like=z0_v)
        reconstruction_cond = cond_v if self.second_term_optimized else state.cond

        total = torch.zeros(state.batch_size, device=z0_v.device)
        for _ in range(self.num_noise_draws):
            eps = state.randn_like_latent().to(z0_v.dtype)
            z_s = alpha_s**0.5 * z0_v + (1 - alpha_s) ** 0.5 * eps
            if self.stop_gradient:
                with torch.no_grad():
                    z0_s = self._x0(state, z_s, s, reconstruction_cond)
                total = total + squared_distance(z0_v, z0_s)
                continue
            z0_s = self._x0(state, z_s, s, reconstruction_cond)
            total = total + squared_distance(z0_v, z0_s.detach())
            total = total + self.lam * squared_distance(z0_v.detach(), z0_s)
        return total / self.num_noise_draws


register_objective("minority", MinorityObjective)
register_objective("minority-naive", MinorityObjective.naive)
