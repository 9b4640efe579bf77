"""Probability-flow ODE likelihood against analytic densities and against k-diffusion."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from minorityprompt.errors import MinorityPromptError
from minorityprompt.metrics.likelihood import (
    bits_per_dim,
    dequantization_offset_bits,
    ode_log_likelihood,
    uniform_dequantize,
)
from minorityprompt.metrics.probability_flow import ContinuousVPSchedule

BPD_TOLERANCE = 0.01
# With the exact terminal marginal as prior only the solver's error remains.
SOLVER_BPD_TOLERANCE = 1e-3


def linear_alphas_cumprod(num_train_timesteps: int = 1000) -> torch.Tensor:
    """The DDPM linear schedule (beta from 1e-4 to 0.02), in float64."""
    betas = torch.linspace(1e-4, 0.02, num_train_timesteps, dtype=torch.float64)
    return torch.cumprod(1 - betas, dim=0)


def scaled_linear_alphas_cumprod(num_train_timesteps: int = 1000) -> torch.Tensor:
    """Stable Diffusion's schedule (sqrt beta linear from sqrt 0.00085 to sqrt 0.012)."""
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, num_train_timesteps, dtype=torch.float64)
    return torch.cumprod(1 - betas**2, dim=0)


class GaussianMixtureEps:
    """The exact eps of a noised mixture of isotropic Gaussians N(mean_k, std_k^2 I).

    Under z_t = sqrt(a) x + sqrt(1 - a) noise, component k becomes
    N(sqrt(a) mean_k, (a std_k^2 + 1 - a) I), and eps = -sqrt(1 - a) * grad log p_t(z).
    """

    def __init__(self, weights, means, stds, schedule: ContinuousVPSchedule) -> None:
        self.log_weights = torch.log(torch.as_tensor(weights, dtype=torch.float64))
        self.means = torch.as_tensor(means, dtype=torch.float64)
        self.stds = torch.as_tensor(stds, dtype=torch.float64)
        self.schedule = schedule

    def _alphas(self, t: torch.Tensor) -> torch.Tensor:
        values = [self.schedule.alpha(float(v)) for v in t.detach().cpu()]
        return torch.tensor(values, dtype=torch.float64)

    def _component_terms(self, z, alpha):
        """Return per-component log weights + log densities and variances, for z of shape (B, D)."""
        dimension = z.shape[1]
        variances = alpha[:, None] * self.stds[None, :] ** 2 + (1 - alpha[:, None])
        centers = alpha.sqrt()[:, None, None] * self.means[None, :, :]
        squared = (z[:, None, :] - centers).pow(2).sum(-1)
        log_normal = -0.5 * (squared / variances + dimension * torch.log(2 * math.pi * variances))
        return self.log_weights[None, :] + log_normal, variances, centers

    def __call__(self, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        alpha = self._alphas(t).to(z.dtype)
        flat = z.flatten(1)
        log_terms, variances, centers = self._component_terms(flat, alpha)
        responsibilities = torch.softmax(log_terms, dim=1)
        component_scores = -(flat[:, None, :] - centers) / variances[:, :, None]
        score = (responsibilities[:, :, None] * component_scores).sum(1)
        return (-(1 - alpha).sqrt()[:, None] * score).reshape(z.shape)

    def terminal_log_density(self, z: torch.Tensor) -> torch.Tensor:
        """The exact log density of the noised marginal at the last timestep, VP scaling."""
        flat = z.flatten(1).double()
        alpha = torch.full((flat.shape[0],), self.schedule.alpha(999.0), dtype=torch.float64)
        log_terms, _, _ = self._component_terms(flat, alpha)
        return torch.logsumexp(log_terms, dim=1)

    def log_density(self, x: torch.Tensor, extra_variance: float) -> torch.Tensor:
        """log density of x + sqrt(extra_variance) * noise, the data smoothed at t_start."""
        flat = x.flatten(1).double()
        ones = torch.ones(flat.shape[0], dtype=torch.float64)
        stds = self.stds
        self.stds = (stds**2 + extra_variance).sqrt()
        try:
            log_terms, _, _ = self._component_terms(flat, ones)
        finally:
            self.stds = stds
        return torch.logsumexp(log_terms, dim=1)


class FullCovarianceGaussianEps:
    """The exact eps of N(mean, covariance) noised: (a C + (1 - a) I)^-1 (z - sqrt(a) mean)."""

    def __init__(self, mean, covariance, schedule: ContinuousVPSchedule) -> None:
        self.mean = mean
        self.covariance = covariance
        self.schedule = schedule

    def __call__(self, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        alpha = self.schedule.alpha(float(t[0]))
        identity = torch.eye(self.mean.shape[0], dtype=torch.float64)
        precision = torch.linalg.inv(alpha * self.covariance + (1 - alpha) * identity)
        centered = z - math.sqrt(alpha) * self.mean
        return math.sqrt(1 - alpha) * centered @ precision.T

    def terminal_log_density(self, z: torch.Tensor) -> torch.Tensor:
        alpha = self.schedule.alpha(999.0)
        identity = torch.eye(self.mean.shape[0], dtype=torch.float64)
        distribution = torch.distributions.MultivariateNormal(
            math.sqrt(alpha) * self.mean, alpha * self.covariance + (1 - alpha) * identity
        )
        return distribution.log_prob(z.double())

    def log_density(self, x: torch.Tensor, extra_variance: float) -> torch.Tensor:
        identity = torch.eye(self.mean.shape[0], dtype=torch.float64)
        distribution = torch.distributions.MultivariateNormal(
            self.mean, self.covariance + extra_variance * identity
        )
        return distribution.log_prob(x)


def start_variance(schedule: ContinuousVPSchedule) -> float:
    """sigma(t_start = 0)^2, the noise variance of x at the first timestep, VE scaling."""
    return math.exp(2 * schedule.log_sigma(0.0))


def analytic_bpd(log_density: torch.Tensor, dimension: int) -> torch.Tensor:
    return -log_density / (dimension * math.log(2))


def exact_prior_bpd(result, model, dimension: int) -> torch.Tensor:
    """The ODE's bits per dimension with the N(0, I) prior swapped for the exact marginal at T.

    The N(0, I) prior differs from the noised data's marginal by about sqrt(alpha_T) * mean
    per dimension, so this isolates the error of the ODE solve itself.
    """
    exact_prior = model.terminal_log_density(result.latent)
    log_likelihood = result.log_likelihood - result.prior_log_prob + exact_prior
    return analytic_bpd(log_likelihood, dimension)


@pytest.fixture(scope="module")
def schedule() -> ContinuousVPSchedule:
    return ContinuousVPSchedule(linear_alphas_cumprod())


def test_schedule_interpolates_log_sigma(schedule):
    table = linear_alphas_cumprod().numpy()
    log_sigmas = 0.5 * np.log((1 - table) / table)

    assert schedule.log_sigma(10.0) == pytest.approx(log_sigmas[10], rel=1e-12)
    assert schedule.log_sigma(10.25) == pytest.approx(
        0.75 * log_sigmas[10] + 0.25 * log_sigmas[11], rel=1e-12
    )
    assert schedule.timestep(schedule.log_sigma(123.4)) == pytest.approx(123.4, abs=1e-9)
    assert schedule.alpha(999.0) == pytest.approx(table[999], rel=1e-9)


def test_schedule_rejects_bad_tables():
    with pytest.raises(MinorityPromptError, match="strictly decreasing"):
        ContinuousVPSchedule([0.9, 0.95, 0.5])
    with pytest.raises(MinorityPromptError, match=r"alphas_cumprod\[2\] = 0.0 is outside"):
        ContinuousVPSchedule([0.9, 0.5, 0.0])
    with pytest.raises(MinorityPromptError, match="1-D table"):
        ContinuousVPSchedule([[0.9, 0.5]])


def test_gaussian_matches_analytic_density(schedule):
    model = GaussianMixtureEps([1.0], [[0.3, -0.2]], [0.5], schedule)
    x = torch.tensor([[0.3, -0.2], [1.1, -0.5], [-0.4, 0.1]], dtype=torch.float64)

    result = ode_log_likelihood(x, model, linear_alphas_cumprod())

    expected = analytic_bpd(model.log_density(x, start_variance(schedule)), dimension=2)
    assert result.bits_per_dim.shape == (3,)
    assert torch.allclose(result.bits_per_dim, expected, atol=BPD_TOLERANCE)
    assert torch.allclose(exact_prior_bpd(result, model, 2), expected, atol=SOLVER_BPD_TOLERANCE)
    assert result.num_function_evaluations > 0


def test_mixture_2d_matches_analytic_density(schedule):
    model = GaussianMixtureEps([0.3, 0.7], [[-1.0, 0.5], [1.2, -0.3]], [0.3, 0.6], schedule)
    x = torch.tensor([[-1.0, 0.5], [1.0, 0.0], [0.1, 0.1], [2.5, 2.0]], dtype=torch.float64)

    result = ode_log_likelihood(x, model, linear_alphas_cumprod(), divergence="exact")

    expected = analytic_bpd(model.log_density(x, start_variance(schedule)), dimension=2)
    assert torch.allclose(result.bits_per_dim, expected, atol=BPD_TOLERANCE)
    assert torch.allclose(exact_prior_bpd(result, model, 2), expected, atol=SOLVER_BPD_TOLERANCE)
    # The rare point far from both components must come out as the least likely.
    assert int(result.bits_per_dim.argmax()) == 3


def test_mixture_1d_rk4_matches_analytic_density(schedule):
    model = GaussianMixtureEps([0.5, 0.5], [[-0.8], [0.8]], [0.2, 0.4], schedule)
    x = torch.tensor([[-0.8], [0.0], [0.9]], dtype=torch.float64)

    result = ode_log_likelihood(x, model, linear_alphas_cumprod(), method="rk4", num_steps=50)

    expected = analytic_bpd(model.log_density(x, start_variance(schedule)), dimension=1)
    assert torch.allclose(result.bits_per_dim, expected, atol=BPD_TOLERANCE)
    assert torch.allclose(exact_prior_bpd(result, model, 1), expected, atol=SOLVER_BPD_TOLERANCE)
    assert result.num_function_evaluations == 4 * 50


def test_exact_divergence_full_covariance(schedule):
    generator = torch.Generator().manual_seed(0)
    factor = torch.randn(6, 6, generator=generator, dtype=torch.float64) * 0.4
    covariance = factor @ factor.T + 0.1 * torch.eye(6, dtype=torch.float64)
    mean = torch.linspace(-0.5, 0.5, 6, dtype=torch.float64)
    model = FullCovarianceGaussianEps(mean, covariance, schedule)
    x = mean + torch.randn(3, 6, generator=generator, dtype=torch.float64) @ factor.T

    result = ode_log_likelihood(x, model, linear_alphas_cumprod(), divergence="exact")

    expected = analytic_bpd(model.log_density(x, start_variance(schedule)), dimension=6)
    assert torch.allclose(result.bits_per_dim, expected, atol=BPD_TOLERANCE)
    assert torch.allclose(exact_prior_bpd(result, model, 6), expected, atol=SOLVER_BPD_TOLERANCE)


def hutchinson_errors(schedule, num_probes, probe_distribution, seed, num_steps=50):
    """Bits-per-dimension errors of Hutchinson estimates on 512 copies of one point."""
    generator = torch.Generator().manual_seed(1)
    factor = torch.randn(6, 6, generator=generator, dtype=torch.float64) * 0.4
    covariance = factor @ factor.T + 0.1 * torch.eye(6, dtype=torch.float64)
    model = FullCovarianceGaussianEps(torch.zeros(6, dtype=torch.float64), covariance, schedule)
    x = (torch.randn(1, 6, generator=generator, dtype=torch.float64) @ factor.T).repeat(512, 1)

    result = ode_log_likelihood(
        x,
        model,
        linear_alphas_cumprod(),
        divergence="hutchinson",
        num_probes=num_probes,
        probe_distribution=probe_distribution,
        method="rk4",
        num_steps=num_steps,
        generator=torch.Generator().manual_seed(seed),
    )

    expected = analytic_bpd(model.log_density(x, start_variance(schedule)), dimension=6)
    return result.bits_per_dim - expected


@pytest.mark.parametrize("probe_distribution", ["rademacher", "gaussian"])
def test_hutchinson_unbiased(schedule, probe_distribution):
    errors = hutchinson_errors(schedule, 4, probe_distribution, seed=2)

    # Each row has its own probes, so the mean error shrinks like 1 / sqrt(rows). A sum over
    # probes instead of a mean would multiply the divergence integral by num_probes.
    standard_error = errors.std() / math.sqrt(errors.numel())
    assert errors.mean().abs() < 4 * standard_error + SOLVER_BPD_TOLERANCE
    assert errors.std() > 0


def test_hutchinson_more_probes_less_spread(schedule):
    # On this model 25 RK4 steps with the exact divergence are within 1e-5 bits of the density.
    one_probe = hutchinson_errors(schedule, 1, "rademacher", seed=3, num_steps=25)
    sixteen_probes = hutchinson_errors(schedule, 16, "rademacher", seed=3, num_steps=25)

    # Averaging 16 independent probes divides the spread by about 4.
    assert sixteen_probes.std() < 0.5 * one_probe.std()
    assert sixteen_probes.mean().abs() < 0.05


def test_matches_k_diffusion_log_likelihood():
    from k_diffusion.external import DiscreteEpsDDPMDenoiser
    from k_diffusion.sampling import log_likelihood

    # Stable Diffusion's schedule has alpha_T = 0.0047 and alpha_0 = 0.99915, large enough that
    # both the prior conversion and the Jacobian of x -> z_0 exceed the tolerance below.
    alphas_cumprod = scaled_linear_alphas_cumprod()
    schedule = ContinuousVPSchedule(alphas_cumprod)
    model = GaussianMixtureEps([0.4, 0.6], [[-1.0], [1.0]], [0.3, 0.5], schedule)
    denoiser = DiscreteEpsDDPMDenoiser(model, alphas_cumprod, quantize=False)
    x = torch.tensor([[-1.2], [0.1], [0.9], [2.0]], dtype=torch.float64)

    ours = ode_log_likelihood(x, model, alphas_cumprod, rtol=1e-6, atol=1e-6)
    k_log_likelihood, _ = log_likelihood(
        denoiser, x, denoiser.sigma_min, denoiser.sigma_max, atol=1e-6, rtol=1e-6
    )

    # k-diffusion returns log p of x in the VE scaling, as here, but its prior is
    # N(0, sigma_max^2) on x_T = z_T / sqrt(alpha_T), which is N(0, 1 - alpha_T) on z_T. The
    # Jacobian terms of x_T -> z_T cancel between its prior and its divergence integral.
    alpha_end = float(alphas_cumprod[-1])
    z_end = ours.latent.flatten(1)
    standard = torch.distributions.Normal(0.0, 1.0).log_prob(z_end).sum(1)
    k_prior = torch.distributions.Normal(0.0, math.sqrt(1 - alpha_end)).log_prob(z_end).sum(1)
    converted = k_log_likelihood + standard - k_prior
    # In one dimension a Rademacher probe gives the exact divergence, so k-diffusion's
    # single-probe estimate is exact and the two solvers must agree to their tolerances.
    assert torch.allclose(ours.log_likelihood, converted, atol=1e-4)


def test_dequantization_offset_arithmetic():
    assert dequantization_offset_bits(256, (-1.0, 1.0)) == pytest.approx(7.0)
    assert dequantization_offset_bits(256, (0.0, 1.0)) == pytest.approx(8.0)
    log_likelihood = torch.tensor([-3.0, 1.0], dtype=torch.float64)
    continuous = bits_per_dim(log_likelihood, dimension=4)
    discrete = bits_per_dim(log_likelihood, dimension=4, num_bins=256)
    assert torch.allclose(discrete - continuous, torch.full((2,), 7.0, dtype=torch.float64))
    assert torch.allclose(continuous, -log_likelihood / (4 * math.log(2)))


def test_uniform_dequantize_stays_in_bin():
    levels = torch.arange(256, dtype=torch.float64)
    x = levels / 127.5 - 1
    generator = torch.Generator().manual_seed(0)

    noisy = uniform_dequantize(x.repeat(8), num_bins=256, generator=generator)

    bins = torch.floor((noisy + 1) * 128)
    assert torch.equal(bins, levels.repeat(8))
    assert noisy.min() >= -1.0
    assert noisy.max() < 1.0


def test_num_bins_adds_offset(schedule):
    model = GaussianMixtureEps([1.0], [[0.0]], [0.5], schedule)
    x = torch.tensor([[0.2], [-0.3]], dtype=torch.float64)

    plain = ode_log_likelihood(x, model, linear_alphas_cumprod(), method="rk4", num_steps=20)
    binned = ode_log_likelihood(
        x, model, linear_alphas_cumprod(), method="rk4", num_steps=20, num_bins=256, progress=True
    )

    assert binned.dequantization_offset_bits == pytest.approx(7.0)
    assert torch.allclose(binned.bits_per_dim, plain.bits_per_dim + 7.0)
    assert torch.allclose(binned.log_likelihood, plain.log_likelihood)


def test_invalid_arguments_raise(schedule):
    model = GaussianMixtureEps([1.0], [[0.0]], [0.5], schedule)
    x = torch.zeros(2, 1, dtype=torch.float64)
    alphas_cumprod = linear_alphas_cumprod()

    with pytest.raises(MinorityPromptError, match="dequantize=True needs num_bins"):
        ode_log_likelihood(x, model, alphas_cumprod, dequantize=True)
    with pytest.raises(MinorityPromptError, match="divergence 'trace' is not supported"):
        ode_log_likelihood(x, model, alphas_cumprod, divergence="trace")
    with pytest.raises(MinorityPromptError, match="method 'euler' is not supported"):
        ode_log_likelihood(x, model, alphas_cumprod, method="euler")
    with pytest.raises(MinorityPromptError, match="must satisfy 0 <= t_start < t_end <= 999"):
        ode_log_likelihood(x, model, alphas_cumprod, t_start=500.0, t_end=100.0)
    with pytest.raises(MinorityPromptError, match="floating-point"):
        ode_log_likelihood(torch.zeros(2, 1, dtype=torch.long), model, alphas_cumprod)


def test_wrong_eps_shape_raises():
    def bad_eps(z, t):
        return z.flatten()

    with pytest.raises(MinorityPromptError, match=r"eps_fn returned shape \(4,\)"):
        ode_log_likelihood(torch.zeros(2, 2), bad_eps, linear_alphas_cumprod())
