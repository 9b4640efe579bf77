import torch

from minorityprompt import Denoiser, PromptEncoder, generate, load_pipeline
from minorityprompt.metrics import ode_log_likelihood

pipe = load_pipeline("tiny-sd15")
prompts = ["a red circle", "a blue square"]
latents = generate(pipe, prompts, seeds=0, num_inference_steps=10, output_type="latent",
                   progress=False).latents

denoiser = Denoiser.from_pipeline(pipe)
with torch.no_grad():
    cond = PromptEncoder.from_pipeline(pipe).encode(prompts)


def eps_fn(z, timesteps):
    """Predict the noise without guidance, conditioned on the samples' own prompts."""
    return denoiser.predict(z, timesteps, cond).eps


result = ode_log_likelihood(
    latents, eps_fn, pipe.scheduler.alphas_cumprod,
    method="rk4", num_steps=20, divergence="hutchinson", num_probes=2,
    generator=torch.Generator().manual_seed(0),
)
print("log p (nats):", result.log_likelihood.tolist())
print("bits per dimension:", result.bits_per_dim.tolist())
print("function evaluations:", result.num_function_evaluations)
