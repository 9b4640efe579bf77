"""CFG++ on DDIM and DPM-Solver++(2M): steps by hand, the weight range, the unconditional pass."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler
from solver_support import PROMPTS, SEEDS, SIZE, branches, counting_unet_calls

from minorityprompt import Conditioning, MinorityPromptError, StepInputs, generate
from minorityprompt.solvers.registry import get_solver

LAMBDA = 0.6


class RecordingHook:
    """Records the latent that each step starts from."""

    def __init__(self):
        self.latents = []

    def before_step(self, state):
        self.latents.append(state.z_t)
        return StepInputs(state.z_t, state.cond, state.uncond)


def run_recorded(pipe, solver, steps, guidance_scale=LAMBDA):
    hook = RecordingHook()
    result = generate(pipe, PROMPTS, seeds=SEEDS, solver=solver, num_inference_steps=steps,
                      guidance_scale=guidance_scale, hooks=[hook], output_type="latent",
                      progress=False, **SIZE)
    return hook.latents + [result.latents]


def eps_predictions(pipe, z, t, alpha):
    """Unconditional and conditional eps of the UNet at `z`, converted by hand."""
    cond, uncond, _ = branches(pipe)
    both = Conditioning.cat([uncond, cond])
    with torch.no_grad():
        output = pipe.unet(torch.cat([z, z]), t, return_dict=False, **both.unet_kwargs())[0]
    if pipe.scheduler.config.prediction_type == "v_prediction":
        output = alpha**0.5 * output + (1 - alpha) ** 0.5 * torch.cat([z, z])
    return output.chunk(2)


def relative_difference(a, b):
    return float((a - b).abs().max() / b.abs().max())


def test_cfgpp_ddim_step_matches_hand_computation():
    pipe = tiny("sd2")
    latents = run_recorded(pipe, "cfgpp", steps=2)
    scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    scheduler.set_timesteps(2)
    t, t_next = scheduler.timesteps
    alpha, alpha_next = scheduler.alphas_cumprod[t], scheduler.alphas_cumprod[t_next]

    eps_uncond, eps_cond = eps_predictions(pipe, latents[0], t, alpha)
    eps_guided = eps_uncond + LAMBDA * (eps_cond - eps_uncond)
    x0 = (latents[0] - (1 - alpha).sqrt() * eps_guided) / alpha.sqrt()
    by_hand = alpha_next.sqrt() * x0 + (1 - alpha_next).sqrt() * eps_uncond

    assert relative_difference(latents[1], by_hand) < 1e-6


def test_cfgpp_dpmpp_uses_guided_history():
    pipe = tiny("sd15")
    latents = run_recorded(pipe, "cfgpp-dpmpp-2m", steps=3)
    scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)
    scheduler.set_timesteps(3)
    sigmas = scheduler.sigmas.double()

    guided, unconditional, noise_uncond = [], [], []
    for k in range(2):
        sigma = float(sigmas[k])
        alpha = torch.tensor(1 / (1 + sigma**2))
        eps_uncond, eps_cond = eps_predictions(pipe, latents[k], scheduler.timesteps[k], alpha)
        eps_guided = eps_uncond + LAMBDA * (eps_cond - eps_uncond)
        guided.append((latents[k] - (1 - alpha).sqrt() * eps_guided) / alpha.sqrt())
        unconditional.append((latents[k] - (1 - alpha).sqrt() * eps_uncond) / alpha.sqrt())
        noise_uncond.append(eps_uncond)
    signal_2 = 1 / (1 + sigmas[2] ** 2) ** 0.5
    noise_2 = sigmas[2] * signal_2
    h = torch.log(sigmas[1] / sigmas[2])
    r = torch.log(sigmas[0] / sigmas[1]) / h
    weight = signal_2 * (1 - torch.exp(-h)) / (2 * r)
    first_order = signal_2 * guided[1] + noise_2 * noise_uncond[1]
    by_hand = (first_order + weight * (guided[1] - guided[0])).float()
    mixed_history = (first_order + weight * (guided[1] - unconditional[0])).float()

    assert relative_difference(latents[2], by_hand) < 1e-6
    assert relative_difference(latents[2], mixed_history) > 1e-3


@pytest.mark.parametrize("solver", ["cfgpp", "cfgpp-dpmpp-2m"])
@pytest.mark.parametrize("guidance_scale", [7.5, -0.1])
def test_cfgpp_rejects_invalid_weights(solver, guidance_scale):
    pipe = tiny("sd15")
    with pytest.raises(MinorityPromptError, match=rf"Invalid guidance scale {guidance_scale} for "
                       r"CFG\+\+, whose weights lie in \[0, 1\].*guidance_scale=0\.6"):
        generate(pipe, PROMPTS, seeds=SEEDS, solver=solver, num_inference_steps=1,
                 guidance_scale=guidance_scale, output_type="latent", progress=False, **SIZE)


@pytest.mark.parametrize("solver", ["cfgpp", "cfgpp-dpmpp-2m"])
def test_cfgpp_always_runs_unconditional_pass(solver):
    pipe = tiny("sd15")
    instance = get_solver(solver)
    batch_sizes = []
    handle = pipe.unet.register_forward_pre_hook(
        lambda module, args: batch_sizes.append(args[0].shape[0])
    )
    try:
        generate(pipe, PROMPTS, seeds=SEEDS, solver=instance, num_inference_steps=2,
                 guidance_scale=1.0, output_type="latent", progress=False, **SIZE)
    finally:
        handle.remove()

    assert all(instance.uses_uncond(weight) for weight in (0.0, 0.6, 1.0))
    assert instance.default_guidance_scale == 0.6
    assert batch_sizes == [2 * len(PROMPTS)] * 2


def test_cfgpp_at_zero_is_unconditional_ddim():
    pipe = tiny("sdxl")
    options = dict(seeds=SEEDS, num_inference_steps=3, guidance_scale=0.0,
                   output_type="latent", progress=False, **SIZE)
    with counting_unet_calls(pipe) as calls:
        cfgpp = generate(pipe, PROMPTS, solver="cfgpp", **options)
    ddim = generate(pipe, PROMPTS, solver="ddim", **options)

    assert torch.equal(cfgpp.latents, ddim.latents)
    assert calls[0] == 3
