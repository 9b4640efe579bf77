"""SGMS moves the latent, never the prompt embeddings or the model."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny

from minorityprompt.baselines import SGMS
from minorityprompt.core.denoiser import Denoiser
from minorityprompt.core.prompt_encoder import PromptEncoder
from minorityprompt.core.seeding import generators_for
from minorityprompt.core.state import StepState
from minorityprompt.errors import MinorityPromptError
from minorityprompt.generation import generate
from minorityprompt.objectives.minority import squared_distance
from minorityprompt.solvers.registry import available_solvers

PROMPTS = ["a photo of a cat", "a red bus"]
SIZE = (32, 32)


def step_state(pipe, step_index: int = 0, batch_prompts=PROMPTS, seed: int = 0) -> StepState:
    encoder = PromptEncoder.from_pipeline(pipe)
    denoiser = Denoiser.from_pipeline(pipe)
    with torch.no_grad():
        cond = encoder.encode(batch_prompts, size=SIZE)
        uncond = encoder.encode_negative(None, len(batch_prompts), SIZE)
    timestep = torch.tensor(601)
    generator = torch.Generator().manual_seed(seed)
    z_t = torch.randn(len(batch_prompts), 4, 16, 16, generator=generator)
    return StepState(
        z_t=z_t,
        step_index=step_index,
        num_steps=6,
        timestep=timestep,
        alpha_t=denoiser.alpha(timestep, like=z_t.new_zeros(())),
        next_timestep=torch.tensor(401),
        cond=cond,
        uncond=uncond,
        guidance_scale=7.5,
        denoiser=denoiser,
    )


def test_moves_latent_only():
    pipe = tiny("sd15")
    state = step_state(pipe)
    cond_before = state.cond.prompt_embeds.clone()
    parameters_before = {name: p.detach().clone() for name, p in pipe.unet.named_parameters()}
    flags_before = {name: p.requires_grad for name, p in pipe.unet.named_parameters()}

    with torch.no_grad():
        inputs = SGMS(lr=0.01, seeds=[0, 1]).before_step(state)

    assert not torch.equal(inputs.z, state.z_t)
    assert inputs.z.dtype == state.z_t.dtype
    assert inputs.cond is state.cond
    assert inputs.uncond is state.uncond
    assert torch.equal(state.cond.prompt_embeds, cond_before)
    for name, parameter in pipe.unet.named_parameters():
        assert torch.equal(parameter, parameters_before[name]), f"{name} changed"
        assert parameter.requires_grad == flags_before[name], f"{name} flag changed"
        assert parameter.grad is None, f"{name} has a gradient"


def test_step_size_follows_adam():
    """Adam's first step moves every coordinate by about lr, whatever the gradient's scale."""
    pipe = tiny("sd15")
    state = step_state(pipe)

    with torch.no_grad():
        inputs = SGMS(lr=0.01, iterations=1, seeds=[0, 1]).before_step(state)

    change = (inputs.z - state.z_t).abs()
    assert change.max().item() == pytest.approx(0.01, rel=1e-3)
    assert change.median().item() > 0.005


def test_update_ascends_stop_gradient_surrogate():
    """The step raises `||x0(z) - sg(x0_hat(z_s))||^2` with the reconstruction held fixed.

    The loss itself may fall, because the reconstruction also moves with `z`, and SGMS
    deliberately drops that path.
    """
    pipe = tiny("sd15")
    state = step_state(pipe)
    denoiser = state.denoiser
    hook = SGMS(lr=0.005, iterations=1, seeds=[0, 1])

    with torch.no_grad():
        moved = hook.before_step(state).z
        x0 = denoiser.predict(state.z_t, state.timestep, state.cond).x0
        generators = generators_for([0, 1], "sgms")
        eps = torch.stack([torch.randn(x0.shape[1:], generator=g) for g in generators])
        s = torch.tensor(750)
        alpha_s = denoiser.alpha(s, like=x0)
        z_s = alpha_s**0.5 * x0 + (1 - alpha_s) ** 0.5 * eps
        reconstruction = denoiser.predict(z_s, s, state.cond).x0
        moved_x0 = denoiser.predict(moved, state.timestep, state.cond).x0

    before = squared_distance(x0, reconstruction)
    after = squared_distance(moved_x0, reconstruction)
    assert (after > before).all()
    assert hook.history[0].objective[0] == pytest.approx(before.tolist(), rel=1e-5)


def test_objective_is_reconstruction_loss():
    pipe = tiny("sd15")
    state = step_state(pipe)
    denoiser = state.denoiser
    hook = SGMS(s_ratio=0.75)
    torch.manual_seed(3)
    value = hook.objective(state, state.z_t)

    torch.manual_seed(3)
    x0 = denoiser.predict(state.z_t, state.timestep, state.cond).x0
    alpha_s = denoiser.alpha(torch.tensor(750), like=x0)
    eps = torch.randn(x0.shape)
    z_s = alpha_s**0.5 * x0 + (1 - alpha_s) ** 0.5 * eps
    expected = squared_distance(x0, denoiser.predict(z_s, torch.tensor(750), state.cond).x0)

    torch.testing.assert_close(value, expected)


def test_unscheduled_step_is_untouched():
    pipe = tiny("sd15")
    state = step_state(pipe, step_index=1)

    inputs = SGMS(every=3).before_step(state)

    assert inputs.z is state.z_t
    assert inputs.cond is state.cond


def test_sample_does_not_depend_on_batch():
    pipe = tiny("sd15")
    alone = step_state(pipe, batch_prompts=[PROMPTS[1]], seed=0)
    batch = step_state(pipe, batch_prompts=PROMPTS, seed=0)
    batch.z_t[1] = alone.z_t[0]

    with torch.no_grad():
        moved_alone = SGMS(lr=0.01, seeds=[9]).before_step(alone).z
        moved_batch = SGMS(lr=0.01, seeds=[4, 9]).before_step(batch).z

    torch.testing.assert_close(moved_alone[0], moved_batch[1], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"lr": 0.0}, "learning rate must be positive"),
        ({"every": 0}, "every \\(N\\)"),
        ({"iterations": -1}, "iterations \\(K\\)"),
        ({"s_ratio": 1.0}, "s_ratio must lie in"),
    ],
)
def test_invalid_settings(options, message):
    with pytest.raises(MinorityPromptError, match=message):
        SGMS(**options)


@pytest.mark.parametrize("solver", available_solvers())
def test_runs_through_every_solver(solver):
    pipe = tiny("sd15")
    guidance = 0.6 if solver.startswith("cfgpp") else 7.5
    common = {
        "solver": solver,
        "num_inference_steps": 2,
        "guidance_scale": guidance,
        "height": 32,
        "width": 32,
        "output_type": "latent",
        "progress": False,
    }
    hook = SGMS(lr=0.01, every=1, iterations=1, seeds=[0, 1])

    plain = generate(pipe, PROMPTS, seeds=[0, 1], **common)
    guided = generate(pipe, PROMPTS, seeds=[0, 1], hooks=[hook], **common)

    assert torch.isfinite(guided.latents).all()
    assert not torch.equal(guided.latents, plain.latents)
    assert [record.step_index for record in hook.history] == [0, 1]
