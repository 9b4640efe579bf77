"""MinorityPrompt inside k-diffusion samplers."""

import torch
from diffusers.utils.torch_utils import randn_tensor
from k_diffusion import sampling

from minorityprompt import Denoiser, PromptEncoder, PromptOptimizer, load_pipeline
from minorityprompt.generation import default_size
from minorityprompt.integrations.k_diffusion import KDiffusionDenoiser, sample_k_diffusion

MODEL = "tiny-sd15"
pipe = load_pipeline(MODEL)
prompts = ["a red circle", "a blue square"]
seeds = [0, 1]
optimizer = PromptOptimizer(every=3, iterations=3, lr=1e-2)

# One call: encode the prompts, draw the noise, sample and decode.
result = sample_k_diffusion(
    pipe, "dpmpp_2m", prompts, seeds, optimizer=optimizer,
    num_inference_steps=10, guidance_scale=5.0, sigmas="karras", progress=False,
)
print("dpmpp_2m: optimized steps", result.record.optimized_steps)
print("UNet calls:", result.model_evaluations)

# The model object itself, for any sampler with a fixed sigma schedule.
encoder = PromptEncoder.from_pipeline(pipe)
generators = [torch.Generator().manual_seed(seed) for seed in seeds]
with torch.no_grad():
    cond = encoder.encode(prompts)
    uncond = encoder.encode_negative(None, len(prompts))
    run = optimizer.start(encoder, prompts, seeds)
    model = KDiffusionDenoiser(Denoiser.from_pipeline(pipe), cond, uncond, 5.0, hook=run)
    sigmas = sampling.get_sigmas_karras(8, float(model.sigma_min), float(model.sigma_max))
    # Standard normal noise in the VP scaling. sample() scales it to sigmas[0].
    height, width = default_size(pipe)
    factor = pipe.vae_scale_factor
    shape = (len(seeds), pipe.unet.config.in_channels, height // factor, width // factor)
    z = randn_tensor(shape, generator=generators)
    latents = model.sample(sampling.sample_heun, z, sigmas, generators, progress=False)
print("heun:", tuple(latents.shape), "optimized steps", run.record.optimized_steps)
