"""`solvers.loop.attach`: the prompt optimizer inside a sampling loop written by the caller."""

from __future__ import annotations

import doctest

import pytest
import torch
from conftest import tiny
from diffusers import DDIMScheduler
from solver_support import PROMPTS, SEEDS, SIZE, unet_outputs

import minorityprompt.solvers.loop as loop_module
from minorityprompt import MinorityPromptError, PromptOptimizer, StepInputs, generate
from minorityprompt.solvers.loop import attach


def custom_ddim(pipe, optimizer, steps, guidance_scale=7.5):
    """DDIM written out by hand: x0 and eps from the guided output, then the DDIM update."""
    scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    scheduler.set_timesteps(steps)
    timesteps = scheduler.timesteps
    alphas = scheduler.alphas_cumprod
    with torch.no_grad(), attach(pipe, optimizer, PROMPTS, seeds=SEEDS, num_steps=steps,
                                 guidance_scale=guidance_scale, **SIZE) as session:
        z = session.initial_latents()
        for i, t in enumerate(timesteps):
            next_t = timesteps[i + 1] if i + 1 < steps else None
            inputs = session.inputs(z, i, t, next_t)
            output_uncond, output_cond = unet_outputs(pipe, inputs.z, t, inputs.cond,
                                                      inputs.uncond)
            eps = output_uncond + guidance_scale * (output_cond - output_uncond)
            alpha = alphas[t]
            alpha_next = alphas[next_t] if next_t is not None else scheduler.final_alpha_cumprod
            x0 = (inputs.z - (1 - alpha) ** 0.5 * eps) / alpha**0.5
            z = alpha_next**0.5 * x0 + (1 - alpha_next) ** 0.5 * eps
    return z, session


def test_custom_ddim_loop_equals_generate():
    pipe = tiny("sdxl")
    latents, session = custom_ddim(pipe, PromptOptimizer(lr=1e-2, every=2), steps=4)
    own = generate(pipe, PROMPTS, seeds=SEEDS, solver="ddim", num_inference_steps=4,
                   optimizer=PromptOptimizer(lr=1e-2, every=2), output_type="latent",
                   progress=False, **SIZE)

    assert torch.equal(latents, own.latents)
    assert session.record.optimized_steps == own.record.optimized_steps == [0, 2]
    assert session.record.model_evaluations == own.record.model_evaluations
    assert session.denoiser.num_evaluations == session.record.model_evaluations


def test_docstring_example_runs():
    results = doctest.testmod(loop_module, optionflags=doctest.ELLIPSIS)

    assert results.attempted > 0
    assert results.failed == 0


def test_repeated_step_returns_same_inputs():
    pipe = tiny("sd15")
    z = torch.zeros(2, 4, 16, 16)
    with attach(pipe, PromptOptimizer(lr=1e-2, iterations=1), PROMPTS, seeds=SEEDS,
                num_steps=3, **SIZE) as session:
        first = session.inputs(z, 0, 801)
        evaluations = session.denoiser.num_evaluations
        again = session.inputs(z, 0, 801)

    assert again is first
    assert session.denoiser.num_evaluations == evaluations == 2
    assert [step.step_index for step in session.record.steps] == [0]


def test_session_rejects_invalid_steps():
    pipe = tiny("sd15")
    z = torch.zeros(2, 4, 16, 16)
    with attach(pipe, None, PROMPTS, seeds=SEEDS, num_steps=3, **SIZE) as session:
        base = session.conditioning(z, 1, 601)
        with pytest.raises(MinorityPromptError, match=r"step_index 3 is outside \[0, 3\)\. "
                           r"Pass the loop's step counter"):
            session.inputs(z, 3, 1)
        with pytest.raises(MinorityPromptError, match=r"step_index 0 comes after step 1\. "
                           r"Visit steps in order"):
            session.inputs(z, 0, 801)

    assert torch.equal(base.prompt_embeds, session.cond.prompt_embeds)
    assert session.record is None
    with pytest.raises(MinorityPromptError, match=r"This SolverSession is closed"):
        session.inputs(z, 2, 201)
    with pytest.raises(MinorityPromptError, match=r"Got 2 seeds for 1 prompts\. Give one "
                       r"seed per prompt"):
        with attach(pipe, None, PROMPTS[:1], seeds=SEEDS, num_steps=3):
            pass


class UncondReplacingHook:
    def before_step(self, state):
        return StepInputs(state.z_t, state.cond, state.cond)


def test_conditioning_rejects_replaced_uncond():
    pipe = tiny("sd15")
    z = torch.zeros(2, 4, 16, 16)
    with attach(pipe, None, PROMPTS, seeds=SEEDS, num_steps=2, hooks=[UncondReplacingHook()],
                **SIZE) as session:
        with pytest.raises(MinorityPromptError, match=r"replaced the unconditional branch"):
            session.conditioning(z, 0, 501)
        assert session.inputs(z, 0, 501).uncond is session.cond
