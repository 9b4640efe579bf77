"""CADS: the annealing schedule, the rescale, the tensors it noises, runs through solvers."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny
from hypothesis import given, settings
from hypothesis import strategies as st
from toy_denoiser import toy_denoiser

from minorityprompt.baselines import CADS, CADS_PRESETS, anneal_condition, cads_gamma
from minorityprompt.baselines.cads import rescale_to_reference
from minorityprompt.core.conditioning import Conditioning
from minorityprompt.core.seeding import generators_for
from minorityprompt.core.state import StepState
from minorityprompt.errors import MinorityPromptError
from minorityprompt.generation import generate
from minorityprompt.solvers.registry import available_solvers


@pytest.mark.parametrize(
    ("t", "expected"),
    [(0.0, 1.0), (0.3, 1.0), (0.6, 1.0), (0.75, 0.5), (0.9, 0.0), (0.95, 0.0), (1.0, 0.0)],
)
def test_gamma_boundaries(t, expected):
    assert cads_gamma(t, 0.6, 0.9).item() == pytest.approx(expected, abs=1e-12)


@settings(max_examples=50, deadline=None)
@given(
    tau1=st.floats(0.0, 0.9),
    width=st.floats(0.01, 0.5),
    fraction=st.floats(0.0, 1.0),
)
def test_gamma_is_linear_between_taus(tau1, width, fraction):
    tau2 = min(tau1 + width, 1.0)
    t = tau1 + fraction * (tau2 - tau1)

    assert cads_gamma(t, tau1, tau2).item() == pytest.approx(
        (tau2 - t) / (tau2 - tau1), abs=1e-9
    )


def test_gamma_step_when_taus_equal():
    assert cads_gamma(0.5, 0.5, 0.5).item() == 1.0
    assert cads_gamma(0.500001, 0.5, 0.5).item() == 0.0


def test_anneal_condition_formula():
    y = torch.randn(2, 3, 4, generator=torch.Generator().manual_seed(0))
    noise = torch.randn(2, 3, 4, generator=torch.Generator().manual_seed(1))

    annealed = anneal_condition(y, gamma=0.36, noise_scale=0.25, noise=noise)

    torch.testing.assert_close(annealed, 0.6 * y + 0.25 * 0.8 * noise)


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    scale=st.floats(0.1, 10.0),
    shift=st.floats(-5.0, 5.0),
)
def test_rescale_preserves_mean_and_std(seed, scale, shift):
    generator = torch.Generator().manual_seed(seed)
    reference = torch.randn(3, 7, 5, generator=generator) * scale + shift
    noised = torch.randn(3, 7, 5, generator=generator) * 2.0 - 1.0

    rescaled = rescale_to_reference(noised, reference, psi=1.0)

    dims = (1, 2)
    torch.testing.assert_close(
        rescaled.mean(dim=dims), reference.mean(dim=dims), rtol=1e-4, atol=1e-4 * scale
    )
    torch.testing.assert_close(
        rescaled.std(dim=dims), reference.std(dim=dims), rtol=1e-4, atol=1e-5
    )


def test_rescale_psi_mixes():
    generator = torch.Generator().manual_seed(0)
    reference = torch.randn(2, 10, generator=generator) * 3
    noised = torch.randn(2, 10, generator=generator)
    full = rescale_to_reference(noised, reference, psi=1.0)

    torch.testing.assert_close(rescale_to_reference(noised, reference, psi=0.0), noised)
    torch.testing.assert_close(
        rescale_to_reference(noised, reference, psi=0.25), 0.25 * full + 0.75 * noised
    )


def sdxl_like_state(
    step_index: int, timestep: int, num_steps: int = 10, batch: int = 2
) -> StepState:
    generator = torch.Generator().manual_seed(7)
    cond = Conditioning(
        torch.randn(batch, 5, 8, generator=generator),
        torch.randn(batch, 6, generator=generator),
        torch.ones(batch, 6),
    )
    uncond = Conditioning(
        torch.randn(batch, 5, 8, generator=generator),
        torch.randn(batch, 6, generator=generator),
        torch.ones(batch, 6),
    )
    denoiser = toy_denoiser()
    return StepState(
        z_t=torch.zeros(batch, 4, 4, 4),
        step_index=step_index,
        num_steps=num_steps,
        timestep=torch.tensor(timestep),
        alpha_t=denoiser.alpha(torch.tensor(timestep), like=torch.zeros(())),
        next_timestep=None,
        cond=cond,
        uncond=uncond,
        guidance_scale=7.5,
        denoiser=denoiser,
    )


def test_hook_leaves_clean_steps_alone():
    hook = CADS(seeds=[0, 1])
    state = sdxl_like_state(step_index=0, timestep=500)

    inputs = hook.before_step(state)

    assert inputs.cond is state.cond
    assert inputs.uncond is state.uncond
    assert hook.history == [(0, 0.5, 1.0)]


def test_hook_noise_at_full_annealing_without_rescale():
    """At gamma = 0 and psi = 0 the embeddings are exactly `s * n` from the sample's seed."""
    hook = CADS(noise_scale=0.25, psi=0.0, seeds=[11, 12])
    state = sdxl_like_state(step_index=0, timestep=950)

    inputs = hook.before_step(state)

    generators = generators_for([11, 12], "cads")
    expected = torch.stack([torch.randn(5, 8, generator=g) for g in generators]) * 0.25
    torch.testing.assert_close(inputs.cond.prompt_embeds, expected)


def test_hook_default_tensors():
    hook = CADS(seeds=[0, 1])
    state = sdxl_like_state(step_index=0, timestep=800)

    inputs = hook.before_step(state)

    assert not torch.equal(inputs.cond.prompt_embeds, state.cond.prompt_embeds)
    assert not torch.equal(inputs.cond.pooled_prompt_embeds, state.cond.pooled_prompt_embeds)
    assert torch.equal(inputs.cond.add_time_ids, state.cond.add_time_ids)
    assert inputs.uncond is state.uncond
    assert torch.equal(inputs.z, state.z_t)


def test_hook_options_for_uncond_and_pooled():
    hook = CADS(noise_uncond=True, noise_pooled=False, seeds=[0, 1])
    state = sdxl_like_state(step_index=0, timestep=800)

    inputs = hook.before_step(state)

    assert torch.equal(inputs.cond.pooled_prompt_embeds, state.cond.pooled_prompt_embeds)
    assert not torch.equal(inputs.uncond.prompt_embeds, state.uncond.prompt_embeds)
    assert torch.equal(inputs.uncond.pooled_prompt_embeds, state.uncond.pooled_prompt_embeds)


def test_hook_rescale_keeps_statistics():
    hook = CADS(psi=1.0, seeds=[0, 1])
    state = sdxl_like_state(step_index=0, timestep=800)

    embeds = hook.before_step(state).cond.prompt_embeds

    reference = state.cond.prompt_embeds
    torch.testing.assert_close(embeds.mean(dim=(1, 2)), reference.mean(dim=(1, 2)))
    torch.testing.assert_close(embeds.std(dim=(1, 2)), reference.std(dim=(1, 2)))


def test_step_time_convention():
    hook = CADS(time="step")

    assert hook.time_of(sdxl_like_state(step_index=0, timestep=10)) == 1.0
    assert hook.time_of(sdxl_like_state(step_index=5, timestep=999)) == 0.5


def test_sample_noise_does_not_depend_on_batch():
    # At t = 0.9 gamma is 0, so with psi = 0 the embeddings are the scaled noise alone.
    alone = CADS(seeds=[5], psi=0.0).before_step(sdxl_like_state(0, 900, batch=1))
    in_batch = CADS(seeds=[3, 5], psi=0.0).before_step(sdxl_like_state(0, 900, batch=2))

    torch.testing.assert_close(alone.cond.prompt_embeds[0], in_batch.cond.prompt_embeds[1])
    assert not torch.equal(in_batch.cond.prompt_embeds[0], in_batch.cond.prompt_embeds[1])


def test_noise_restarts_with_each_run():
    hook = CADS(seeds=[0, 1])
    first = hook.before_step(sdxl_like_state(0, 800)).cond.prompt_embeds
    hook.before_step(sdxl_like_state(1, 800))
    second_run = hook.before_step(sdxl_like_state(0, 800)).cond.prompt_embeds

    torch.testing.assert_close(first, second_run)
    assert [step for step, _, _ in hook.history] == [0]


def test_presets():
    lightning = CADS.preset("sdxl-lightning", seeds=[0])

    assert (lightning.tau1, lightning.tau2, lightning.noise_scale, lightning.psi) == (
        0.8,
        1.0,
        0.1,
        1.0,
    )
    assert CADS_PRESETS["default"] == {"tau1": 0.6, "tau2": 0.9, "noise_scale": 0.25, "psi": 1.0}
    default = CADS()
    assert (default.tau1, default.tau2, default.noise_scale, default.psi) == (0.6, 0.9, 0.25, 1.0)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"tau1": 0.9, "tau2": 0.6}, "0 <= tau1 <= tau2 <= 1"),
        ({"noise_scale": -1.0}, "noise_scale must be non-negative"),
        ({"psi": 1.5}, "psi must lie in"),
        ({"time": "sigma"}, "Unknown time convention 'sigma'"),
    ],
)
def test_invalid_settings(options, message):
    with pytest.raises(MinorityPromptError, match=message):
        CADS(**options)


def test_unknown_preset():
    with pytest.raises(MinorityPromptError, match="Unknown CADS preset 'fast'"):
        CADS.preset("fast")


def test_seed_count_must_match_batch():
    with pytest.raises(MinorityPromptError, match="3 seeds for a batch of 2"):
        CADS(seeds=[0, 1, 2]).before_step(sdxl_like_state(0, 900))


@pytest.mark.parametrize("solver", available_solvers())
def test_runs_through_every_solver(solver):
    pipe = tiny("sd15")
    guidance = 0.6 if solver.startswith("cfgpp") else 7.5
    common = {
        "solver": solver,
        "num_inference_steps": 3,
        "guidance_scale": guidance,
        "height": 32,
        "width": 32,
        "output_type": "latent",
        "progress": False,
    }
    hook = CADS(tau1=0.2, tau2=0.6, seeds=[0, 1])

    plain = generate(pipe, ["a cat", "a cat"], seeds=[0, 1], **common)
    annealed = generate(pipe, ["a cat", "a cat"], seeds=[0, 1], hooks=[hook], **common)

    assert torch.isfinite(annealed.latents).all()
    assert not torch.equal(annealed.latents, plain.latents)
    assert any(gamma < 1 for _, _, gamma in hook.history)
