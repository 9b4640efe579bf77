"""One conformance suite that every solver adapter passes, on SD 1.5, SD 2 (v-prediction), SDXL.

An adapter runs the prompt optimizer inside one kind of sampler: this library's solvers
(`generate`), diffusers schedulers through `MinorityPromptCallback`, k-diffusion samplers
through `sample_k_diffusion`, and a caller's own loop through `solvers.loop.attach`. Each
adapter names an unhooked reference: the stock diffusers pipeline with the matching
scheduler, the real k-diffusion sampler, or (for CFG++, which no stock scheduler runs) a
loop written here from the raw UNet outputs.

With the no-op objective the optimizer leaves `v` at its initial value, so the hooked run
must equal the reference fed `C_v` (with that initial `v`) on the scheduled steps and `C`
on the others.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
import torch
from conftest import tiny
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler
from solver_support import (
    PROMPTS,
    SEEDS,
    SIZE,
    NoOpObjective,
    RunKeepingOptimizer,
    branches,
    counting_unet_calls,
    parameter_snapshot,
    real_k_diffusion_latents,
    starting_noise,
    stock_latents,
    table_sigmas,
    unet_outputs,
    with_scheduler,
)

from minorityprompt import PromptEncoder, PromptOptimizer, generate
from minorityprompt.integrations.diffusers_callback import MinorityPromptCallback
from minorityprompt.integrations.k_diffusion import sample_k_diffusion
from minorityprompt.solvers.loop import attach

STEPS = 3
ITERATIONS = 2
# The minority objective evaluates the UNet twice per Adam iteration (z0_v and z0_s).
MINORITY_CALLS_PER_ITERATION = 2
CFGPP_GUIDANCE = 0.6


def ddim(config):
    return DDIMScheduler.from_config(config)


def ddim_trailing(config):
    return DDIMScheduler.from_config(config, timestep_spacing="trailing")


def dpmpp_2m(config):
    return DPMSolverMultistepScheduler.from_config(config)


def euler_trailing(config):
    return EulerDiscreteScheduler.from_config(config, timestep_spacing="trailing")


def to_eps(pipe, output, z, alpha):
    if pipe.scheduler.config.prediction_type == "v_prediction":
        return alpha**0.5 * output + (1 - alpha) ** 0.5 * z
    return output


# -- references written from the raw UNet outputs -------------------------------------------


def cfgpp_ddim_reference(pipe, steps, conditionings):
    """CFG++ DDIM: x0 from the guided eps, re-noised with the unconditional eps."""
    scheduler = ddim(pipe.scheduler.config)
    scheduler.set_timesteps(steps)
    alphas = scheduler.alphas_cumprod
    _, uncond, _ = branches(pipe)
    z = starting_noise(pipe)
    with torch.no_grad():
        for i, t in enumerate(scheduler.timesteps):
            alpha = alphas[t]
            alpha_next = alphas[scheduler.timesteps[i + 1]] if i + 1 < steps else alphas[0]
            output_uncond, output_cond = unet_outputs(pipe, z, t, conditionings[i], uncond)
            eps_uncond = to_eps(pipe, output_uncond, z, alpha)
            eps_cond = to_eps(pipe, output_cond, z, alpha)
            eps_guided = eps_uncond + CFGPP_GUIDANCE * (eps_cond - eps_uncond)
            x0 = (z - (1 - alpha).sqrt() * eps_guided) / alpha.sqrt()
            z = alpha_next.sqrt() * x0 + (1 - alpha_next).sqrt() * eps_uncond
    return z


def cfgpp_dpmpp_2m_reference(pipe, steps, conditionings):
    """CFG++ DPM-Solver++(2M) in k-diffusion's variance-exploding form, guided history."""
    scheduler = dpmpp_2m(pipe.scheduler.config)
    scheduler.set_timesteps(steps)
    sigmas = table_sigmas(pipe, scheduler.timesteps)
    _, uncond, _ = branches(pipe)
    x = starting_noise(pipe) * (sigmas[0] ** 2 + 1) ** 0.5
    previous = None
    with torch.no_grad():
        for k, t in enumerate(scheduler.timesteps):
            sigma, sigma_next = sigmas[k], sigmas[k + 1]
            alpha = 1 / (1 + sigma**2)
            z = x * alpha**0.5
            output_uncond, output_cond = unet_outputs(pipe, z, t, conditionings[k], uncond)
            eps_uncond = to_eps(pipe, output_uncond, z, alpha)
            eps_cond = to_eps(pipe, output_cond, z, alpha)
            denoised = x - sigma * (eps_uncond + CFGPP_GUIDANCE * (eps_cond - eps_uncond))
            denoised_uncond = x - sigma * eps_uncond
            if sigma_next == 0:
                x = denoised
            else:
                h = math.log(sigma / sigma_next)
                x = denoised + math.exp(-h) * (x - denoised_uncond)
                if previous is not None:
                    r = math.log(sigmas[k - 1] / sigma) / h
                    x = x + (1 - math.exp(-h)) / (2 * r) * (denoised - previous)
            previous = denoised
    return x


def k_diffusion_reference(sampler_name):
    def reference(pipe, steps, conditionings):
        scheduler = ddim(pipe.scheduler.config)
        scheduler.set_timesteps(steps)
        sigmas = table_sigmas(pipe, scheduler.timesteps)
        stochastic = sampler_name == "euler_ancestral"
        return real_k_diffusion_latents(pipe, sampler_name, sigmas, conditionings, stochastic)

    return reference


# -- adapters -------------------------------------------------------------------------------


@dataclass
class Adapter:
    """How one adapter runs with an optimizer, and its unhooked reference.

    Attributes:
        run: `(pipe, optimizer) -> (latents, record)`.
        reference: `(pipe, steps, conditionings) -> latents`, with one conditional branch
            per step.
        sampling_calls: UNet calls of an unhooked run of `steps` steps.
        relative_tolerance: Allowed `max |difference| / max |reference|`; 0 is bit for bit.
        steps: Sampling steps of the runs.
    """

    name: str
    run: object
    reference: object
    sampling_calls: object = lambda steps: steps
    relative_tolerance: float = 0.0
    steps: int = STEPS


def own_solver(name, guidance_scale=7.5, steps=STEPS):
    def run(pipe, optimizer):
        result = generate(
            pipe, PROMPTS, seeds=SEEDS, optimizer=optimizer, solver=name,
            num_inference_steps=steps, guidance_scale=guidance_scale, output_type="latent",
            progress=False, **SIZE,
        )
        return result.latents, result.record

    return run


def stock_reference(scheduler_factory, guidance_scale=7.5, **call_options):
    def reference(pipe, steps, conditionings):
        scheduler = scheduler_factory(pipe.scheduler.config)
        return stock_latents(pipe, scheduler, steps, conditionings, guidance_scale, **call_options)

    return reference


def callback_path(scheduler_factory, **call_options):
    def run(pipe, optimizer):
        stock = with_scheduler(pipe, scheduler_factory(pipe.scheduler.config))
        callback = MinorityPromptCallback(optimizer)
        kwargs = callback.prepare(stock, PROMPTS, seeds=SEEDS, num_inference_steps=STEPS, **SIZE)
        latents = stock(**kwargs, output_type="latent", **call_options).images
        return latents, callback.record

    return run


def k_diffusion_path(sampler_name):
    def run(pipe, optimizer):
        result = sample_k_diffusion(
            pipe, sampler_name, PROMPTS, seeds=SEEDS, optimizer=optimizer,
            num_inference_steps=STEPS, output_type="latent", progress=False, **SIZE,
        )
        return result.latents, result.record

    return run


def own_loop(pipe, optimizer):
    """A DDIM loop written by a user, with the optimizer attached."""
    scheduler = ddim(pipe.scheduler.config)
    scheduler.set_timesteps(STEPS)
    with torch.no_grad(), attach(pipe, optimizer, PROMPTS, seeds=SEEDS, num_steps=STEPS,
                                 **SIZE) as session:
        z = session.initial_latents()
        for i, t in enumerate(scheduler.timesteps):
            inputs = session.inputs(z, i, t)
            output_uncond, output_cond = unet_outputs(pipe, inputs.z, t, inputs.cond,
                                                      inputs.uncond)
            guided = output_uncond + 7.5 * (output_cond - output_uncond)
            z = scheduler.step(guided, t, inputs.z).prev_sample
    return z, session.record


ADAPTERS = [
    Adapter("ddim", own_solver("ddim"), stock_reference(ddim)),
    Adapter("ddim-sde", own_solver("ddim-sde"), stock_reference(ddim, eta=1.0)),
    Adapter("dpmpp-2m", own_solver("dpmpp-2m"), stock_reference(dpmpp_2m)),
    # 4 steps: the trailing timesteps [999, 749, 499, 249] are evenly spaced, so the stock
    # scheduler's previous timestep `t - 1000 // 4` is the schedule's own next timestep.
    Adapter("lightning", own_solver("lightning", 1.0, steps=4),
            stock_reference(ddim_trailing, 1.0), steps=4),
    Adapter("cfgpp", own_solver("cfgpp", CFGPP_GUIDANCE), cfgpp_ddim_reference,
            relative_tolerance=1e-6),
    Adapter("cfgpp-dpmpp-2m", own_solver("cfgpp-dpmpp-2m", CFGPP_GUIDANCE),
            cfgpp_dpmpp_2m_reference, relative_tolerance=1e-6),
    Adapter("callback-ddim-eta1", callback_path(ddim, eta=1.0), stock_reference(ddim, eta=1.0)),
    Adapter("callback-dpmpp-2m", callback_path(dpmpp_2m), stock_reference(dpmpp_2m)),
    Adapter("callback-euler", callback_path(euler_trailing), stock_reference(euler_trailing)),
    Adapter("k-dpmpp_2m", k_diffusion_path("dpmpp_2m"), k_diffusion_reference("dpmpp_2m")),
    Adapter("k-euler_ancestral", k_diffusion_path("euler_ancestral"),
            k_diffusion_reference("euler_ancestral")),
    Adapter("k-heun", k_diffusion_path("heun"), k_diffusion_reference("heun"),
            sampling_calls=lambda steps: 2 * steps - 1),
    Adapter("loop-ddim", own_loop, stock_reference(ddim)),
]

_MINORITY_RUNS: dict[tuple[str, str], dict] = {}


def minority_run(adapter: Adapter, family: str) -> dict:
    """One run with the minority objective on steps 1 and 2, shared by the checks below."""
    key = (adapter.name, family)
    if key not in _MINORITY_RUNS:
        pipe = tiny(family)
        optimizer = RunKeepingOptimizer(lr=0.1, iterations=ITERATIONS, schedule=[1, 2])
        before = parameter_snapshot(pipe)
        with counting_unet_calls(pipe) as calls:
            latents, record = adapter.run(pipe, optimizer)
        encoder = PromptEncoder.from_pipeline(pipe)
        size = (SIZE["height"], SIZE["width"])
        initial = PromptOptimizer().start(encoder, PROMPTS, SEEDS, size).tokens.vectors
        _MINORITY_RUNS[key] = {
            "record": record,
            "unet_calls": calls[0],
            "before": before,
            "after": parameter_snapshot(pipe),
            "initial_vectors": [vector.detach().clone() for vector in initial],
            "vectors": [vector.detach().clone() for vector in optimizer.last_run.tokens.vectors],
        }
    return _MINORITY_RUNS[key]


# Each check takes 0.2 to 0.5 s per adapter and family on a CPU. The default suite runs
# the no-op comparison on SD 2 (v-prediction) and SDXL (two text encoders), the
# minority-run checks on SDXL; `-m slow` runs the rest.
NOOP_FAMILIES = [pytest.param("sd15", marks=pytest.mark.slow), "sd2", "sdxl"]
MINORITY_FAMILIES = [
    pytest.param("sd15", marks=pytest.mark.slow),
    pytest.param("sd2", marks=pytest.mark.slow),
    "sdxl",
]


@pytest.mark.parametrize("adapter", ADAPTERS, ids=lambda adapter: adapter.name)
class TestSolverConformance:
    @pytest.mark.parametrize("family", NOOP_FAMILIES)
    def test_noop_objective_reproduces_reference(self, adapter, family):
        pipe = tiny(family)
        optimizer = RunKeepingOptimizer(NoOpObjective(), every=2, iterations=1)
        latents, record = adapter.run(pipe, optimizer)
        cond, _, placeholder = branches(pipe, optimizer)
        scheduled = record.optimized_steps
        conditionings = [placeholder if i in scheduled else cond for i in range(adapter.steps)]
        reference = adapter.reference(pipe, adapter.steps, conditionings)

        assert scheduled == list(range(0, adapter.steps, 2))
        scale = float(reference.abs().max())
        difference = float((latents - reference).abs().max())
        assert difference <= adapter.relative_tolerance * scale

    @pytest.mark.parametrize("family", MINORITY_FAMILIES)
    def test_optimizer_fires_on_scheduled_steps_only(self, adapter, family):
        record = minority_run(adapter, family)["record"]

        unscheduled = [0] * (adapter.steps - 3)
        assert record.optimized_steps == [1, 2]
        assert [step.step_index for step in record.steps] == list(range(adapter.steps))
        assert [len(step.objective) for step in record.steps] == [
            0, ITERATIONS, ITERATIONS, *unscheduled
        ]

    @pytest.mark.parametrize("family", MINORITY_FAMILIES)
    def test_only_placeholder_vectors_change(self, adapter, family):
        run = minority_run(adapter, family)
        before, after = run["before"], run["after"]

        assert before.keys() == after.keys()
        changed = [
            name for name in before
            if not torch.equal(before[name][0], after[name][0]) or before[name][1] != after[name][1]
        ]
        assert changed == []
        for final, start in zip(run["vectors"], run["initial_vectors"], strict=True):
            assert not torch.equal(final, start)

    @pytest.mark.parametrize("family", MINORITY_FAMILIES)
    def test_model_calls_as_documented(self, adapter, family):
        run = minority_run(adapter, family)
        record = run["record"]
        optimizer_calls = 2 * ITERATIONS * MINORITY_CALLS_PER_ITERATION

        assert record.model_evaluations == optimizer_calls
        assert run["unet_calls"] == adapter.sampling_calls(adapter.steps) + optimizer_calls
