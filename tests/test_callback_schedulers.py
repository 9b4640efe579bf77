"""`MinorityPromptCallback` with DDIM (any eta), DPM-Solver++(2M) and Euler schedulers."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler
from solver_support import PROMPTS, SEEDS, SIZE, stock_latents, with_scheduler

from minorityprompt import PromptOptimizer, generate
from minorityprompt.integrations.diffusers_callback import MinorityPromptCallback
from minorityprompt.integrations.k_diffusion import sample_k_diffusion

STEPS = 4

SCHEDULERS = {
    "ddim-eta0.5": (lambda config: DDIMScheduler.from_config(config), {"eta": 0.5}),
    "ddim-eta1": (lambda config: DDIMScheduler.from_config(config), {"eta": 1.0}),
    "dpmpp-2m": (lambda config: DPMSolverMultistepScheduler.from_config(config), {}),
    "euler-trailing": (
        lambda config: EulerDiscreteScheduler.from_config(config, timestep_spacing="trailing"),
        {},
    ),
}


def callback_latents(pipe, scheduler, optimizer, **call_options):
    stock = with_scheduler(pipe, scheduler)
    callback = MinorityPromptCallback(optimizer)
    kwargs = callback.prepare(stock, PROMPTS, seeds=SEEDS, num_inference_steps=STEPS, **SIZE)
    latents = stock(**kwargs, output_type="latent", **call_options).images
    return latents, callback.record


@pytest.mark.parametrize("scheduler_name, family", [("ddim-eta0.5", "sd15"),
                                                    ("dpmpp-2m", "sdxl"),
                                                    ("euler-trailing", "sdxl")])
def test_callback_without_optimization_equals_stock(scheduler_name, family):
    pipe = tiny(family)
    make_scheduler, call_options = SCHEDULERS[scheduler_name]
    reference = stock_latents(pipe, make_scheduler(pipe.scheduler.config), STEPS, **call_options)
    latents, record = callback_latents(
        pipe, make_scheduler(pipe.scheduler.config), PromptOptimizer(schedule=[]), **call_options
    )

    assert torch.equal(latents, reference)
    assert record.optimized_steps == []
    assert [step.conditioning for step in record.steps] == ["base"] * STEPS


@pytest.mark.parametrize("scheduler_name, solver, family", [("ddim-eta1", "ddim-sde", "sd15"),
                                                            ("dpmpp-2m", "dpmpp-2m", "sdxl")])
def test_callback_minority_equals_own_solver(scheduler_name, solver, family):
    pipe = tiny(family)
    make_scheduler, call_options = SCHEDULERS[scheduler_name]
    latents, record = callback_latents(
        pipe, make_scheduler(pipe.scheduler.config), PromptOptimizer(lr=1e-2, every=2),
        **call_options,
    )
    own = generate(pipe, PROMPTS, seeds=SEEDS, solver=solver, num_inference_steps=STEPS,
                   optimizer=PromptOptimizer(lr=1e-2, every=2), output_type="latent",
                   progress=False, **SIZE)

    assert record.optimized_steps == own.record.optimized_steps == [0, 2]
    assert float((latents - own.latents).abs().max()) <= 1e-5
    assert record.steps[0].objective == own.record.steps[0].objective


def test_callback_euler_matches_k_diffusion_euler():
    # Leading spacing: diffusers' Euler then starts from noise * sqrt(sigma_max^2 + 1), as
    # sample_k_diffusion does (with trailing spacing it starts from noise * sigma_max).
    pipe = tiny("sd2")
    scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config,
                                                   timestep_spacing="leading")
    latents, record = callback_latents(pipe, scheduler, PromptOptimizer(lr=0.1, every=2))
    sampled = sample_k_diffusion(pipe, "euler", PROMPTS, seeds=SEEDS,
                                 optimizer=PromptOptimizer(lr=0.1, every=2),
                                 sigmas=scheduler.sigmas.clone(), quantize=True,
                                 output_type="latent", progress=False, **SIZE)

    assert record.optimized_steps == sampled.record.optimized_steps == [0, 2]
    scale = float(latents.abs().max())
    # Measured: 7e-6 of scale on CPU float32; the two paths round sigma scalings differently.
    assert float((latents - sampled.latents).abs().max()) <= 1e-5 * scale
