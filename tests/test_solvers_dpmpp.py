"""DPM-Solver++(2M): agreement with diffusers, the data end, and what a hook's edit reaches."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny
from diffusers import DPMSolverMultistepScheduler
from solver_support import PROMPTS, SEEDS, SIZE, stock_latents

from minorityprompt import PromptEncoder, StepInputs, generate
from minorityprompt.core.denoiser import Denoiser
from minorityprompt.solvers.base import SamplingSetup
from minorityprompt.solvers.dpmpp import LogSNRSchedule, dpmpp_schedule


@pytest.mark.parametrize("steps", [1, 2, 16])
def test_dpmpp_matches_stock_scheduler_bit_for_bit(steps):
    # 16 steps: above diffusers' 15-step threshold, the last step is still first order
    # because the schedule ends at sigma = 0. sd2 is the v-prediction model.
    pipe = tiny("sd2")
    scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)
    reference = stock_latents(pipe, scheduler, steps)
    ours = generate(pipe, PROMPTS, seeds=SEEDS, solver="dpmpp-2m", num_inference_steps=steps,
                    output_type="latent", progress=False, **SIZE)

    assert torch.equal(ours.latents, reference)
    assert ours.model_evaluations == steps


def test_dpmpp_schedule_ends_at_data():
    pipe = tiny("sd15")
    timesteps, final_alpha = dpmpp_schedule(pipe.scheduler.config, 5)
    scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)
    scheduler.set_timesteps(5)
    denoiser = Denoiser.from_pipeline(pipe)
    setup = SamplingSetup(denoiser, None, None, 7.5, timesteps, final_alpha)
    schedule = LogSNRSchedule.from_setup(setup, torch.device("cpu"))

    assert torch.equal(timesteps, scheduler.timesteps)
    assert float(final_alpha) == 1.0
    assert torch.equal(schedule.sigma, scheduler.sigmas)
    assert float(schedule.signal[-1]) == 1.0
    assert float(schedule.noise[-1]) == 0.0
    assert torch.isinf(schedule.half_log_snr[-1])


class LatentPinningHook:
    """Replaces the conditional branch at `edit_step`, and at `pin_step` continues from a
    given latent, recording the latent that each step starts from."""

    def __init__(self, edit_step=None, edited=None, pin_step=None, pinned=None):
        self.edit_step, self.edited = edit_step, edited
        self.pin_step, self.pinned = pin_step, pinned
        self.latents = []

    def before_step(self, state):
        z = self.pinned if state.step_index == self.pin_step else state.z_t
        cond = self.edited if state.step_index == self.edit_step else state.cond
        self.latents.append(z)
        return StepInputs(z, cond, state.uncond)


@pytest.mark.parametrize("solver, carries_history", [("dpmpp-2m", True), ("ddim", False)])
def test_edit_reaches_next_step_through_history(solver, carries_history):
    # Step 1 runs on another conditioning; step 2 then starts from the unedited run's latent.
    # Step 3 differs from the unedited run only if the solver reuses step 1's x0.
    pipe = tiny("sd15")
    options = dict(solver=solver, num_inference_steps=4, output_type="latent", progress=False,
                   **SIZE)
    plain = LatentPinningHook()
    generate(pipe, PROMPTS, seeds=SEEDS, hooks=[plain], **options)
    with torch.no_grad():
        edited = PromptEncoder.from_pipeline(pipe).encode(["a red car", "a blue boat"],
                                                          size=(32, 32))
    pinned = LatentPinningHook(edit_step=1, edited=edited, pin_step=2, pinned=plain.latents[2])
    generate(pipe, PROMPTS, seeds=SEEDS, hooks=[pinned], **options)

    assert torch.equal(pinned.latents[2], plain.latents[2])
    assert torch.equal(pinned.latents[3], plain.latents[3]) is not carries_history
