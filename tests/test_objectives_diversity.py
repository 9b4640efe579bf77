"""The diversity objective: pairwise sums, its gradient, and that ascent spreads the batch."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from toy_denoiser import toy_conditioning, toy_denoiser, toy_latent, toy_state

from minorityprompt.core.conditioning import Conditioning
from minorityprompt.core.optimizer import PromptOptimizer
from minorityprompt.errors import MinorityPromptError
from minorityprompt.generation import generate
from minorityprompt.objectives import (
    DiversityObjective,
    MinorityObjective,
    get_objective,
    mean_pairwise_squared_distance,
)
from minorityprompt.objectives.diversity import pairwise_squared_distance_sums
from minorityprompt.testing import tiny_sd_pipeline


def pairwise_sums_by_loop(x: torch.Tensor) -> torch.Tensor:
    flat = x.double().flatten(1)
    return torch.stack(
        [
            sum((flat[i] - flat[j]).pow(2).sum() for j in range(len(flat)) if j != i)
            for i in range(len(flat))
        ]
    )


@settings(max_examples=40, deadline=None)
@given(
    batch=st.integers(2, 6),
    dims=st.integers(1, 12),
    offset=st.floats(-1e3, 1e3),
    seed=st.integers(0, 2**16),
)
def test_pairwise_sums_match_loop(batch, dims, offset, seed):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, dims, generator=generator, dtype=torch.float64) + offset

    expected = pairwise_sums_by_loop(x)
    actual = pairwise_squared_distance_sums(x).double()

    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-3)


def test_pairwise_sums_match_cdist():
    x = torch.randn(5, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    flat = x.flatten(1)
    expected = torch.cdist(flat, flat).pow(2).sum(dim=1)

    torch.testing.assert_close(pairwise_squared_distance_sums(x), expected, rtol=1e-5, atol=1e-4)


def test_mean_pairwise_distance_of_two_points():
    x = torch.tensor([[0.0, 0.0], [3.0, 4.0]])

    assert mean_pairwise_squared_distance(x).item() == pytest.approx(25.0)


def test_objective_mean_gradient_is_batch_gradient():
    """Ascent of the per-sample mean is ascent of the batch J, scaled by 1/B."""
    denoiser = toy_denoiser()
    batch = 3
    z_t = toy_latent(batch, seed=1)
    base = toy_conditioning(batch, seed=2)
    state = toy_state(denoiser, z_t, base)

    embeds = base.prompt_embeds.clone().requires_grad_(True)
    values = DiversityObjective()(state, Conditioning(embeds))
    (gradient,) = torch.autograd.grad(values.mean(), embeds)

    embeds_hand = base.prompt_embeds.clone().requires_grad_(True)
    x0 = denoiser.predict(z_t, state.timestep, Conditioning(embeds_hand)).x0.flatten(1)
    batch_objective = sum(
        (x0[i] - x0[j]).pow(2).sum() for i in range(batch) for j in range(batch) if j != i
    )
    (hand_gradient,) = torch.autograd.grad(batch_objective / batch, embeds_hand)

    assert values.shape == (batch,)
    torch.testing.assert_close(values.sum().double(), batch_objective.detach(), rtol=1e-5, atol=0)
    torch.testing.assert_close(gradient.double(), hand_gradient, rtol=1e-4, atol=1e-8)


def test_objective_rejects_single_sample():
    denoiser = toy_denoiser()
    state = toy_state(denoiser, toy_latent(1, seed=0), toy_conditioning(1, seed=0))

    with pytest.raises(MinorityPromptError, match="at least 2 samples"):
        DiversityObjective()(state, state.cond)


def test_adam_ascent_spreads_toy_estimates():
    """K Adam iterations on per-sample embeddings raise the mean pairwise x0 distance."""
    denoiser = toy_denoiser()
    batch = 4
    z_t = toy_latent(batch, seed=5)
    shared = toy_conditioning(1, seed=6).prompt_embeds.expand(batch, -1, -1)
    embeds = shared.clone().requires_grad_(True)
    state = toy_state(denoiser, z_t, Conditioning(shared))
    adam = torch.optim.Adam([embeds], lr=0.05)

    def spread() -> float:
        with torch.no_grad():
            x0 = denoiser.predict(z_t, state.timestep, Conditioning(embeds)).x0
        return mean_pairwise_squared_distance(x0).item()

    history = [spread()]
    for _ in range(5):
        objective = DiversityObjective()(state, Conditioning(embeds))
        adam.zero_grad()
        (-objective.mean()).backward()
        adam.step()
        history.append(spread())

    assert history[-1] > history[0] * 1.05
    assert all(later > earlier for earlier, later in zip(history, history[1:], strict=False))


@pytest.fixture(scope="module")
def sd15():
    return tiny_sd_pipeline("sd15")


def test_optimizer_spreads_tiny_pipeline_batch(sd15):
    optimizer = PromptOptimizer(objective="diversity", every=1, iterations=4, lr=0.05)
    result = generate(
        sd15,
        ["a photo of a dog"] * 3,
        seeds=[0, 1, 2],
        optimizer=optimizer,
        num_inference_steps=2,
        guidance_scale=7.5,
        height=32,
        width=32,
        output_type="latent",
        progress=False,
    )

    first_step = result.record.steps[0].objective
    before = sum(first_step[0])
    after = sum(first_step[-1])
    assert len(first_step) == 4
    assert after > before


def test_weighted_sum_with_minority():
    denoiser = toy_denoiser()
    z_t = toy_latent(3, seed=1)
    cond = toy_conditioning(3, seed=2)

    combined = get_objective("0.5*minority+2*diversity")(toy_state(denoiser, z_t, cond), cond)
    minority = MinorityObjective()(toy_state(denoiser, z_t, cond), cond)
    diversity = DiversityObjective()(toy_state(denoiser, z_t, cond), cond)

    torch.testing.assert_close(combined, 0.5 * minority + 2 * diversity)
