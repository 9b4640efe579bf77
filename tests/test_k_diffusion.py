"""k-diffusion samplers with the prompt optimizer: step attribution, agreement, errors."""

from __future__ import annotations

import logging

import k_diffusion.sampling as k_sampling
import pytest
import torch
from conftest import tiny
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler
from solver_support import (
    PROMPTS,
    SEEDS,
    SIZE,
    NoOpObjective,
    branches,
    counting_unet_calls,
    real_k_diffusion_latents,
    stock_latents,
    table_sigmas,
)

from minorityprompt import Denoiser, MinorityPromptError, PromptOptimizer, StepInputs, generate
from minorityprompt.integrations.k_diffusion import (
    KDiffusionDenoiser,
    sample_k_diffusion,
    schedule_sigmas,
)

STEPS = 4


class SpyHook:
    """Records the step index, latent and noise level of every hook call."""

    def __init__(self):
        self.steps, self.latents, self.sigmas = [], [], []

    def before_step(self, state):
        self.steps.append(state.step_index)
        self.latents.append(state.z_t)
        # alpha_t is float32, so this sigma is accurate to about 1e-5 relative.
        self.sigmas.append(float(((1 - state.alpha_t) / state.alpha_t) ** 0.5))
        return StepInputs(state.z_t, state.cond, state.uncond)


def test_wrapped_sde_sampler_equals_real_sampler():
    pipe = tiny("sd2")
    scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    scheduler.set_timesteps(STEPS)
    cond, _, _ = branches(pipe)
    reference = real_k_diffusion_latents(
        pipe,
        "dpmpp_2m_sde",
        table_sigmas(pipe, scheduler.timesteps),
        [cond] * STEPS,
        stochastic=True,
    )
    sampled = sample_k_diffusion(
        pipe,
        "dpmpp_2m_sde",
        PROMPTS,
        seeds=SEEDS,
        num_inference_steps=STEPS,
        output_type="latent",
        progress=False,
        **SIZE,
    )

    assert torch.equal(sampled.latents, reference)


# Model calls of a 4-step run: two per step for the second-order single-step samplers,
# except the last step, which goes to sigma = 0 with one call.
MULTI_CALL_SAMPLERS = {"heun": 7, "dpm_2": 7, "dpmpp_2s_ancestral": 7, "dpmpp_sde": 7, "lms": 4}


@pytest.mark.parametrize("sampler", sorted(MULTI_CALL_SAMPLERS))
def test_optimizer_fires_once_per_sampler_step(sampler):
    pipe = tiny("sd15")
    spy = SpyHook()
    reported = []
    with counting_unet_calls(pipe) as calls:
        sampled = sample_k_diffusion(
            pipe,
            sampler,
            PROMPTS,
            seeds=SEEDS,
            optimizer=PromptOptimizer(NoOpObjective(), every=2),
            num_inference_steps=STEPS,
            hooks=[spy],
            output_type="latent",
            progress=False,
            sampler_options={"callback": reported.append},
            **SIZE,
        )

    assert sampled.record.optimized_steps == [0, 2]
    assert [step.step_index for step in sampled.record.steps] == list(range(STEPS))
    assert spy.steps == list(range(STEPS))
    assert [info["i"] for info in reported] == list(range(STEPS))
    assert calls[0] == MULTI_CALL_SAMPLERS[sampler]
    # Step 0's hook runs at step 0's first call. With one call per step, every hook runs on
    # its step's latent. Otherwise step k's hook runs at step k - 1's second call, at a
    # noise level between the two steps.
    single_call = MULTI_CALL_SAMPLERS[sampler] == STEPS
    for k in range(STEPS):
        sigma = float(reported[k]["sigma"])
        step_latent = reported[k]["x"] / (sigma**2 + 1) ** 0.5
        if k == 0 or single_call:
            assert torch.allclose(spy.latents[k], step_latent)
            assert spy.sigmas[k] == pytest.approx(sigma, rel=1e-4)
        else:
            previous_sigma = float(reported[k - 1]["sigma"])
            assert sigma * (1 - 1e-4) <= spy.sigmas[k] < previous_sigma


@pytest.mark.parametrize("family", ["sd15", "sd2"])
def test_dpmpp_2m_agrees_across_implementations(family):
    pipe = tiny(family)
    scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)
    diffusers_latents = stock_latents(pipe, scheduler, 6)
    sigmas = table_sigmas(pipe, scheduler.timesteps)
    own = generate(
        pipe,
        PROMPTS,
        seeds=SEEDS,
        solver="dpmpp-2m",
        num_inference_steps=6,
        output_type="latent",
        progress=False,
        **SIZE,
    )
    sampled = sample_k_diffusion(
        pipe,
        "dpmpp_2m",
        PROMPTS,
        seeds=SEEDS,
        sigmas=sigmas,
        output_type="latent",
        progress=False,
        **SIZE,
    )

    assert torch.equal(scheduler.sigmas, sigmas)
    assert torch.equal(own.latents, diffusers_latents)
    # k-diffusion integrates x = z / sqrt(alpha) with its own float32 rounding; measured
    # 1e-6 of the latent scale on CPU.
    scale = float(own.latents.abs().max())
    assert float((sampled.latents - own.latents).abs().max()) <= 1e-5 * scale


def test_sigma_schedules():
    pipe = tiny("sd15")
    model = KDiffusionDenoiser(Denoiser.from_pipeline(pipe), branches(pipe)[0])
    scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    scheduler.set_timesteps(5)
    karras = schedule_sigmas(pipe, 5, "karras")

    assert torch.equal(
        schedule_sigmas(pipe, 5, "scheduler"), table_sigmas(pipe, scheduler.timesteps)
    )
    assert torch.equal(schedule_sigmas(pipe, 5, "k-diffusion"), model.wrapper.get_sigmas(5))
    assert len(karras) == 6
    assert float(karras[-1]) == 0.0
    assert torch.isclose(karras[0], model.sigma_max)
    with pytest.raises(
        MinorityPromptError,
        match=r"Unknown sigma schedule 'cosine'; use "
        r"'scheduler', 'karras', 'k-diffusion' or a tensor",
    ):
        schedule_sigmas(pipe, 5, "cosine")


class LatentMovingHook:
    def before_step(self, state):
        return StepInputs(state.z_t + 1, state.cond, state.uncond)


def test_invalid_uses_are_rejected(caplog):
    pipe = tiny("sd15")
    options = dict(seeds=SEEDS, num_inference_steps=2, output_type="latent", progress=False, **SIZE)
    with pytest.raises(MinorityPromptError, match=r"takes no `sigmas` schedule"):
        sample_k_diffusion(pipe, k_sampling.sample_dpm_adaptive, PROMPTS, **options)
    with pytest.raises(
        MinorityPromptError,
        match=r"Unknown k-diffusion sampler 'eulr'; "
        r"available: \[.*'dpmpp_2m'",
    ):
        sample_k_diffusion(pipe, "eulr", PROMPTS, **options)
    with pytest.raises(MinorityPromptError, match=r"A step hook moved the latent"):
        sample_k_diffusion(pipe, "euler", PROMPTS, hooks=[LatentMovingHook()], **options)
    with pytest.raises(
        MinorityPromptError,
        match=r"sigmas must be non-negative and "
        r"non-increasing",
    ):
        sample_k_diffusion(
            pipe,
            "euler",
            PROMPTS,
            sigmas=torch.tensor([1.0, 2.0, 0.0]),
            **{**options, "num_inference_steps": 2},
        )

    model = KDiffusionDenoiser(Denoiser.from_pipeline(pipe), branches(pipe)[0])
    x = torch.zeros(2, 4, 16, 16)
    with pytest.raises(
        MinorityPromptError, match=r"has no step schedule\. Run samplers through its sample"
    ):
        model(x, torch.ones(2))

    def sample_without_callback(model, x, sigmas, callback=None):
        for i in range(len(sigmas) - 1):
            x = model(x, sigmas[i] * x.new_ones(x.shape[0]))
        return x

    with caplog.at_level(logging.WARNING, logger="minorityprompt.integrations.k_diffusion"):
        model.sample(sample_without_callback, x, torch.tensor([2.0, 1.0, 0.0]))
    assert "reported 0 of 2 steps through its callback" in caplog.text
