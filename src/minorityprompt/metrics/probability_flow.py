"""The probability-flow ODE of a discrete-time VP (DDPM) model and its divergence.

The discrete table `alphas_cumprod[i]` (i = 0 … T_train-1) is extended to fractional
timesteps by interpolating log sigma linearly between integer timesteps, where
sigma(t)^2 = (1 - alpha(t)) / alpha(t). This is the interpolation of
`k_diffusion.external.DiscreteSchedule` (k-diffusion 0.1.1) and is equivalent to linear
interpolation of the log-SNR, because log SNR = -2 log sigma.

The ODE is integrated in lam = log sigma rather than in t. Both describe the same flow, but in
t the velocity jumps at every integer timestep (d lam / dt is piecewise constant), whereas in
lam it is continuous, which adaptive solvers handle far better. With z the VP-scaled state
(z_t = sqrt(alpha) x_0 + sqrt(1 - alpha) eps),

    dz/dlam = sqrt(1 - alpha) * eps(z, t(lam)) - (1 - alpha) * z,

which is the VP probability-flow ODE dz/dt = -beta(t)/2 * (z + grad log p_t(z)), with
grad log p_t = -eps / sqrt(1 - alpha), after the change of variable from t to lam. Its divergence
is sqrt(1 - alpha) * div eps - (1 - alpha) * D for D dimensions per sample.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from ..errors import MinorityPromptError

EpsFunction = Callable[[Tensor, Tensor], Tensor]
DivergenceMethod = Literal["auto", "exact", "hutchinson"]
ProbeDistribution = Literal["rademacher", "gaussian"]

# Up to this many dimensions per sample, "auto" computes the exact divergence, which costs one
# backward pass per dimension.
EXACT_DIVERGENCE_MAX_DIM = 32


class ContinuousVPSchedule:
    """A DDPM `alphas_cumprod` table extended to fractional timesteps.

    log sigma is linear between integer timesteps, as in k-diffusion's `DiscreteSchedule`.
    """

    def __init__(self, alphas_cumprod: Tensor | np.ndarray | Sequence[float]) -> None:
        if isinstance(alphas_cumprod, Tensor):
            table = alphas_cumprod.detach().cpu().double().numpy()
        else:
            table = np.asarray(alphas_cumprod, dtype=np.float64)
        if table.ndim != 1 or table.shape[0] < 2:
            raise MinorityPromptError(
                f"alphas_cumprod must be a 1-D table with at least 2 entries, got shape "
                f"{tuple(table.shape)}; pass scheduler.alphas_cumprod."
            )
        outside = np.flatnonzero(~((table > 0) & (table < 1)))
        if outside.size:
            index = int(outside[0])
            raise MinorityPromptError(
                f"alphas_cumprod[{index}] = {table[index]!r} is outside the open interval (0, 1), "
                "so its log sigma is infinite; a zero-terminal-SNR schedule must be passed "
                "without its last entry (alphas_cumprod[:-1])."
            )
        if np.any(np.diff(table) >= 0):
            index = int(np.flatnonzero(np.diff(table) >= 0)[0])
            raise MinorityPromptError(
                f"alphas_cumprod must be strictly decreasing, but entry {index + 1} "
                f"({table[index + 1]!r}) is not below entry {index} ({table[index]!r})."
            )
        self.alphas_cumprod = table
        self.log_sigmas = 0.5 * (np.log1p(-table) - np.log(table))
        self.num_train_timesteps = table.shape[0]

    def log_sigma(self, timestep: float) -> float:
        """Interpolate log sigma at a fractional training timestep."""
        self._check_timestep(timestep)
        grid = np.arange(self.num_train_timesteps, dtype=np.float64)
        return float(np.interp(timestep, grid, self.log_sigmas))

    def timestep(self, log_sigma: float) -> float:
        """Invert `log_sigma`: the fractional training timestep with that log sigma."""
        grid = np.arange(self.num_train_timesteps, dtype=np.float64)
        return float(np.interp(log_sigma, self.log_sigmas, grid))

    def alpha(self, timestep: float) -> float:
        """Interpolate alpha (the cumulative product) at a fractional training timestep."""
        return alpha_from_log_sigma(self.log_sigma(timestep))

    def _check_timestep(self, timestep: float) -> None:
        last = self.num_train_timesteps - 1
        if not 0.0 <= timestep <= last:
            raise MinorityPromptError(
                f"timestep {timestep!r} is outside the schedule's range [0, {last}]."
            )


def alpha_from_log_sigma(log_sigma: float) -> float:
    """Convert lam = log sigma to alpha = 1 / (1 + sigma^2)."""
    # 1 / (1 + e^(2 lam)) is the logistic function of -2 lam.
    return 0.5 * (1.0 - math.tanh(log_sigma))


def draw_probes(
    shape: Sequence[int],
    num_probes: int,
    distribution: ProbeDistribution,
    dtype: torch.dtype,
    device: torch.device,
    generator: torch.Generator | None,
) -> list[Tensor]:
    """Draw the Hutchinson probe vectors, each with unit second moment per entry."""
    if num_probes < 1:
        raise MinorityPromptError(f"num_probes must be at least 1, got {num_probes}.")
    probes = []
    for _ in range(num_probes):
        if distribution == "rademacher":
            bits = torch.randint(0, 2, tuple(shape), generator=generator, device="cpu")
            probe = bits.to(dtype) * 2 - 1
        elif distribution == "gaussian":
            probe = torch.randn(tuple(shape), generator=generator, dtype=torch.float64)
        else:
            raise MinorityPromptError(
                f"probe distribution {distribution!r} is not supported; use 'rademacher' or "
                "'gaussian'."
            )
        probes.append(probe.to(dtype=dtype, device=device))
    return probes


def exact_divergence(eps: Tensor, z: Tensor) -> Tensor:
    """Compute the trace of d eps / d z per sample with one backward pass per dimension.

    Assumes that each sample's output depends only on that sample's input (no batch
    statistics), so summing over the batch before differentiating keeps samples apart.
    """
    flat_eps = eps.flatten(1)
    dimension = flat_eps.shape[1]
    divergence = torch.zeros(z.shape[0], dtype=eps.dtype, device=eps.device)
    for index in range(dimension):
        (gradient,) = torch.autograd.grad(flat_eps[:, index].sum(), z, retain_graph=True)
        divergence = divergence + gradient.flatten(1)[:, index]
    return divergence


def hutchinson_divergence(eps: Tensor, z: Tensor, probes: Sequence[Tensor]) -> Tensor:
    """Estimate the trace of d eps / d z per sample as the mean of v^T (d eps / d z) v."""
    total = torch.zeros(z.shape[0], dtype=eps.dtype, device=eps.device)
    for probe in probes:
        (vjp,) = torch.autograd.grad((eps * probe).sum(), z, retain_graph=True)
        total = total + (vjp * probe).flatten(1).sum(1)
    return total / len(probes)


class ProbabilityFlowField:
    """The right-hand side d(z, log p) / d lam of the probability-flow ODE.

    Calling the field with (lam, z) returns dz/dlam and the divergence of the velocity, one
    value per sample. The divergence integrated from data to noise is log p_0(z_0) - log p_T(z_T).
    """

    def __init__(
        self,
        eps_fn: EpsFunction,
        schedule: ContinuousVPSchedule,
        divergence: DivergenceMethod,
        probes: Sequence[Tensor] | None,
        timestep_dtype: torch.dtype,
    ) -> None:
        if divergence == "hutchinson" and not probes:
            raise MinorityPromptError("divergence='hutchinson' needs at least one probe vector.")
        self.eps_fn = eps_fn
        self.schedule = schedule
        self.divergence = divergence
        self.probes = probes
        self.timestep_dtype = timestep_dtype
        self.num_evaluations = 0

    def __call__(self, log_sigma: float, z: Tensor) -> tuple[Tensor, Tensor]:
        alpha = alpha_from_log_sigma(log_sigma)
        one_minus_alpha = 1.0 - alpha
        timestep = self.schedule.timestep(log_sigma)
        timesteps = torch.full((z.shape[0],), timestep, dtype=self.timestep_dtype, device=z.device)

        with torch.enable_grad():
            z = z.detach().requires_grad_(True)
            eps = self.eps_fn(z, timesteps)
            if eps.shape != z.shape:
                raise MinorityPromptError(
                    f"eps_fn returned shape {tuple(eps.shape)} for input shape "
                    f"{tuple(z.shape)}; it must predict the noise with the input's shape."
                )
            if self.divergence == "exact":
                eps_divergence = exact_divergence(eps, z)
            else:
                eps_divergence = hutchinson_divergence(eps, z, self.probes or ())
        self.num_evaluations += 1

        dimension = z[0].numel()
        velocity = math.sqrt(one_minus_alpha) * eps.detach() - one_minus_alpha * z.detach()
        velocity_divergence = (
            math.sqrt(one_minus_alpha) * eps_divergence.detach() - one_minus_alpha * dimension
        )
        return velocity, velocity_divergence
