"""Each ablation switch of the minority objective changes exactly the term it names.

Every check compares the gradient with respect to `C_v` against a form written out by hand
on a float64 toy denoiser, with the same noise draw.
"""

from __future__ import annotations

import pytest
import torch
from toy_denoiser import toy_conditioning, toy_denoiser, toy_latent, toy_state

from minorityprompt.core.conditioning import Conditioning
from minorityprompt.objectives import MinorityObjective, annealed_s, get_objective

TIMESTEP = 600
GUIDANCE = 7.5


def assert_matches(actual, expected):
    """Assert equality up to the fp32 rounding of the objective's distance."""
    scale = expected.abs().max().item()
    torch.testing.assert_close(
        actual.double(), expected.double(), rtol=1e-4, atol=1e-6 * scale
    )


def assert_differs(actual, other):
    relative = (actual - other).norm() / other.norm()
    assert relative > 1e-2, f"gradients differ by only {relative:.2e} relative"


@pytest.fixture(scope="module")
def setup():
    denoiser = toy_denoiser()
    z_t = toy_latent(batch=2, seed=1)
    cond = toy_conditioning(batch=2, seed=2)
    uncond = toy_conditioning(batch=2, seed=3)
    embeds_v = (cond.prompt_embeds + 0.3 * toy_conditioning(2, seed=4).prompt_embeds).detach()
    return denoiser, z_t, cond, uncond, embeds_v


def make_state(setup):
    denoiser, z_t, cond, uncond, _ = setup
    return toy_state(denoiser, z_t, cond, uncond, TIMESTEP, GUIDANCE)


def objective_value_and_gradient(setup, objective):
    embeds = setup[4].clone().requires_grad_(True)
    value = objective(make_state(setup), Conditioning(embeds))
    (gradient,) = torch.autograd.grad(value.sum(), embeds)
    return value.detach(), gradient


def by_hand(setup, guided: bool, second_term: str, stop_gradient: bool):
    """Value and gradient of a hand-written form of the objective.

    `second_term` is `"C"` or `"C_v"`, the reconstruction's conditioning. Without
    stop-gradient the form is `||z0_v - z0_s||^2`, whose gradient equals that of the
    objective with lambda = 1; with stop-gradient it is `||z0_v - sg(z0_s)||^2`.
    """
    denoiser, z_t, cond, uncond, embeds_v = setup
    embeds = embeds_v.clone().requires_grad_(True)
    cond_v = Conditioning(embeds)
    state = make_state(setup)
    eps = state.randn_like_latent()
    s = annealed_s(torch.tensor(TIMESTEP), denoiser.num_train_timesteps)

    def x0(z, timestep, branch):
        if guided:
            return denoiser.predict_guided(z, timestep, branch, uncond, GUIDANCE).guided.x0
        return denoiser.predict(z, timestep, branch).x0

    z0_v = x0(z_t, torch.tensor(TIMESTEP), cond_v)
    alpha_s = denoiser.alpha(s, like=z0_v)
    z_s = alpha_s**0.5 * z0_v + (1 - alpha_s) ** 0.5 * eps
    reconstruction_cond = cond_v if second_term == "C_v" else cond
    if stop_gradient:
        with torch.no_grad():
            z0_s = x0(z_s, s, reconstruction_cond)
    else:
        z0_s = x0(z_s, s, reconstruction_cond)
    value = (z0_v - z0_s).pow(2).flatten(1).sum(dim=1)
    (gradient,) = torch.autograd.grad(value.sum(), embeds)
    return value.detach(), gradient


def test_default_gradient_matches_unstopped_distance(setup):
    value, gradient = objective_value_and_gradient(setup, MinorityObjective())
    hand_value, hand_gradient = by_hand(setup, guided=False, second_term="C", stop_gradient=False)

    assert gradient.abs().max() > 1e-6
    assert_matches(gradient, hand_gradient)
    # With lambda = 1 both terms have the value of the plain distance.
    assert_matches(value, 2 * hand_value)


def test_guided_estimates_switch(setup):
    _, default_gradient = objective_value_and_gradient(setup, MinorityObjective())
    _, gradient = objective_value_and_gradient(setup, MinorityObjective(guided_estimates=True))
    _, hand_gradient = by_hand(setup, guided=True, second_term="C", stop_gradient=False)

    assert_matches(gradient, hand_gradient)
    assert_differs(gradient, default_gradient)


def test_stop_gradient_switch(setup):
    _, default_gradient = objective_value_and_gradient(setup, MinorityObjective())
    value, gradient = objective_value_and_gradient(setup, MinorityObjective(stop_gradient=True))
    hand_value, hand_gradient = by_hand(setup, guided=False, second_term="C", stop_gradient=True)

    assert_matches(gradient, hand_gradient)
    assert_matches(value, hand_value)
    assert_differs(gradient, default_gradient)


def test_stop_gradient_drops_second_term_only(setup):
    # lambda weighs the second term, so it cannot change the stop-gradient objective.
    _, gradient = objective_value_and_gradient(setup, MinorityObjective(stop_gradient=True))
    _, weighted = objective_value_and_gradient(
        setup, MinorityObjective(stop_gradient=True, lam=5.0)
    )
    _, first_term_only = objective_value_and_gradient(setup, MinorityObjective(lam=0.0))

    assert_matches(gradient, weighted)
    assert_matches(gradient, first_term_only)


def test_second_term_optimized_switch(setup):
    _, default_gradient = objective_value_and_gradient(setup, MinorityObjective())
    _, gradient = objective_value_and_gradient(
        setup, MinorityObjective(second_term_optimized=True)
    )
    _, hand_gradient = by_hand(setup, guided=False, second_term="C_v", stop_gradient=False)

    assert_matches(gradient, hand_gradient)
    assert_differs(gradient, default_gradient)


def test_second_term_optimized_uses_cond_v_path(setup):
    """The gradient includes the path through `C_v` inside the reconstruction model call."""
    denoiser, z_t, cond, uncond, embeds_v = setup
    _, gradient = objective_value_and_gradient(
        setup, MinorityObjective(second_term_optimized=True)
    )

    # The same objective, but with C_v detached inside the reconstruction's model call.
    embeds = embeds_v.clone().requires_grad_(True)
    cond_v = Conditioning(embeds)
    state = make_state(setup)
    eps = state.randn_like_latent()
    s = annealed_s(torch.tensor(TIMESTEP), 1000)
    z0_v = denoiser.predict(z_t, torch.tensor(TIMESTEP), cond_v).x0
    alpha_s = denoiser.alpha(s, like=z0_v)
    z_s = alpha_s**0.5 * z0_v + (1 - alpha_s) ** 0.5 * eps
    z0_s = denoiser.predict(z_s, s, cond_v.detach()).x0
    value = (z0_v - z0_s).pow(2).flatten(1).sum(dim=1)
    (without_path,) = torch.autograd.grad(value.sum(), embeds)

    assert_differs(gradient, without_path)


def test_naive_objective_combines_all_three(setup):
    value, gradient = objective_value_and_gradient(setup, MinorityObjective.naive())
    hand_value, hand_gradient = by_hand(setup, guided=True, second_term="C_v", stop_gradient=True)

    assert_matches(gradient, hand_gradient)
    assert_matches(value, hand_value)


def test_naive_registered_name(setup):
    objective = get_objective("minority-naive")

    assert objective.guided_estimates
    assert objective.stop_gradient
    assert objective.second_term_optimized


@pytest.mark.parametrize(
    "switch", ["guided_estimates", "stop_gradient", "second_term_optimized"]
)
def test_each_switch_alone_by_name(setup, switch):
    objective = get_objective("minority", **{switch: True})
    flags = {
        name: getattr(objective, name)
        for name in ("guided_estimates", "stop_gradient", "second_term_optimized")
    }

    assert flags.pop(switch) is True
    assert not any(flags.values())
