"""Prompt optimization inside a sampling loop that you write yourself."""

import torch
from diffusers import DDIMScheduler

from minorityprompt import Conditioning, PromptOptimizer, load_pipeline
from minorityprompt.generation import decode_latents
from minorityprompt.solvers.loop import attach

MODEL = "tiny-sd15"
GUIDANCE = 5.0
STEPS = 10

pipe = load_pipeline(MODEL)
scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
scheduler.set_timesteps(STEPS)
optimizer = PromptOptimizer(objective="minority", every=3, iterations=3, lr=1e-2)


def guided_eps(inputs, timestep):
    """Classifier-free guidance with both branches in one batched UNet call."""
    branches = Conditioning.cat([inputs.uncond, inputs.cond])
    output = pipe.unet(
        torch.cat([inputs.z, inputs.z]), timestep, **branches.unet_kwargs()
    ).sample
    eps_uncond, eps_cond = output.chunk(2)
    return eps_uncond + GUIDANCE * (eps_cond - eps_uncond)


with torch.no_grad(), attach(
    pipe, optimizer, ["a red circle", "a blue square"], seeds=[0, 1],
    num_steps=STEPS, guidance_scale=GUIDANCE,
) as session:
    z = session.initial_latents()
    for i, t in enumerate(scheduler.timesteps):
        # Optimizes v first when the step is scheduled (steps 0, 3, 6, 9 here).
        inputs = session.inputs(z, i, t)
        z = scheduler.step(guided_eps(inputs, t), t, inputs.z).prev_sample

images = decode_latents(pipe, z)
record = session.record
print("optimized steps:", record.optimized_steps)
print("UNet calls by the optimizer:", record.model_evaluations)
print("conditioning per step:", [step.conditioning for step in record.steps])
print("decoded", len(images), "images of size", images[0].size)
