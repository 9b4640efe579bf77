"""Properties of the minority objective on a Gaussian toy whose scores are exact."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from toy import conditioning, gaussian_denoiser

from minorityprompt import MinorityObjective, StepState
from minorityprompt.core.seeding import generators_for

DIM = 6


def make_state(denoiser, z_t, timestep, mu_base, seeds):
    return StepState(
        z_t=z_t,
        step_index=0,
        num_steps=1,
        timestep=torch.tensor(timestep),
        alpha_t=denoiser.alpha(timestep, like=z_t.new_zeros(())),
        next_timestep=None,
        cond=conditioning(mu_base),
        uncond=None,
        guidance_scale=1.0,
        denoiser=denoiser,
        noise_generators=generators_for(seeds, "objective-noise"),
    )


@settings(max_examples=25, deadline=None)
@given(
    sigma=st.floats(0.2, 3.0),
    timestep=st.integers(1, 999),
    shift=st.floats(-2.0, 2.0),
    seed=st.integers(0, 2**30),
)
def test_weighted_objective_sum_equals_denoising_elbo(sigma, timestep, shift, seed):
    """sum_s alpha_s / (1 - alpha_s) J_C(s) == sum_s ||eps - eps_theta(z_s, s, C)||^2."""
    denoiser, _ = gaussian_denoiser(sigma)
    generator = torch.Generator().manual_seed(seed)
    mu_base = torch.randn(2, DIM, generator=generator, dtype=torch.float64)
    mu_v = mu_base + shift
    z_t = torch.randn(2, DIM, generator=generator, dtype=torch.float64)
    z0_v = denoiser.predict(z_t, timestep, conditioning(mu_v)).x0

    weighted_objective = torch.zeros(2, dtype=torch.float64)
    denoising_loss = torch.zeros(2, dtype=torch.float64)
    for s in range(1, 1000, 7):
        objective = MinorityObjective(lam=0.0, s=lambda t, T, s=s: torch.full_like(t, s))
        seeds = [seed + s, seed + s + 1]
        state = make_state(denoiser, z_t, timestep, mu_base, seeds)
        alpha_s = denoiser.alphas_cumprod[s]
        weighted_objective += alpha_s / (1 - alpha_s) * objective(state, conditioning(mu_v))

        eps = make_state(denoiser, z_t, timestep, mu_base, seeds).randn_like_latent()
        z_s = alpha_s**0.5 * z0_v + (1 - alpha_s) ** 0.5 * eps
        eps_theta = denoiser.predict(z_s, s, conditioning(mu_base)).eps
        denoising_loss += (eps - eps_theta).pow(2).sum(dim=1)

    torch.testing.assert_close(weighted_objective, denoising_loss, rtol=1e-4, atol=0)


@settings(max_examples=25, deadline=None)
@given(sigma=st.floats(0.3, 2.0), timestep=st.integers(1, 999), seed=st.integers(0, 2**30))
def test_lambda_one_gradient_equals_plain_squared_distance(sigma, timestep, seed):
    denoiser, _ = gaussian_denoiser(sigma)
    generator = torch.Generator().manual_seed(seed)
    mu_base = torch.randn(3, DIM, generator=generator, dtype=torch.float64)
    z_t = torch.randn(3, DIM, generator=generator, dtype=torch.float64)
    v = (mu_base + 0.5).requires_grad_(True)

    state = make_state(denoiser, z_t, timestep, mu_base, [seed, seed + 1, seed + 2])
    objective = MinorityObjective(lam=1.0)
    (gradient,) = torch.autograd.grad(objective(state, conditioning(v)).sum(), v)

    state = make_state(denoiser, z_t, timestep, mu_base, [seed, seed + 1, seed + 2])
    z0_v = denoiser.predict(z_t, timestep, conditioning(v)).x0
    s = objective.s_schedule(torch.tensor(timestep), 1000)
    alpha_s = denoiser.alpha(s, like=z0_v)
    z_s = alpha_s**0.5 * z0_v + (1 - alpha_s) ** 0.5 * state.randn_like_latent()
    z0_s = denoiser.predict(z_s, s, conditioning(mu_base)).x0
    (expected,) = torch.autograd.grad((z0_v - z0_s).pow(2).sum(), v)

    torch.testing.assert_close(gradient, expected, rtol=1e-10, atol=1e-12)


def test_weighted_objective_tracks_log_density():
    """For Gaussian data the denoising ELBO is affine in -log p with a positive slope, so
    raising the weighted objective lowers the sample's likelihood under the base prompt."""
    sigma = 0.7
    denoiser, model = gaussian_denoiser(sigma)
    mu = torch.zeros(1, DIM, dtype=torch.float64)
    distances = torch.tensor([0.0, 0.5, 1.0, 2.0], dtype=torch.float64)
    x0 = torch.zeros(len(distances), DIM, dtype=torch.float64)
    x0[:, 0] = distances

    expected = torch.zeros(len(distances), dtype=torch.float64)
    sampled = torch.zeros(len(distances), dtype=torch.float64)
    generator = torch.Generator().manual_seed(0)
    draws = 4000
    for s in range(1, 1000, 50):
        alpha = denoiser.alphas_cumprod[s]
        c = (1 - alpha) ** 0.5 / (alpha * sigma**2 + 1 - alpha)
        squared = (x0 - mu).pow(2).sum(dim=1)
        expected += DIM * (1 - c * (1 - alpha) ** 0.5) ** 2 + c**2 * alpha * squared

        eps = torch.randn(draws, len(distances), DIM, generator=generator, dtype=torch.float64)
        z_s = alpha**0.5 * x0 + (1 - alpha) ** 0.5 * eps
        mu_rows = mu.expand(draws * len(distances), DIM).unsqueeze(1)
        eps_theta = model(z_s.reshape(-1, DIM), torch.tensor(s), mu_rows)[0]
        sampled += (eps.reshape(-1, DIM) - eps_theta).pow(2).sum(dim=1).reshape(draws, -1).mean(0)

    torch.testing.assert_close(sampled, expected, rtol=0.02, atol=0.0)
    negative_log_density = -model.log_density(x0, mu)
    slopes = torch.diff(expected) / torch.diff(negative_log_density)
    assert torch.all(slopes > 0)
    torch.testing.assert_close(slopes, slopes[0].expand_as(slopes), rtol=1e-9, atol=0)


def test_annealed_s_schedule_values():
    from minorityprompt.objectives import annealed_s, fixed_ratio_s

    timesteps = torch.tensor([999, 981, 500, 21, 1, 0])
    assert annealed_s(timesteps, 1000).tolist() == [1, 19, 500, 979, 999, 999]
    assert fixed_ratio_s(0.75)(timesteps, 1000).tolist() == [750] * 6
    assert MinorityObjective().s_schedule is annealed_s
