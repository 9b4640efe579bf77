"""Helpers for the solver tests: a no-op objective, stock-pipeline references, call counting."""

from __future__ import annotations

from contextlib import contextmanager

import torch
from diffusers.utils.torch_utils import randn_tensor

from minorityprompt import Conditioning, PromptEncoder, PromptOptimizer

PROMPTS = ["a photo of a cat", "a dog on a skateboard"]
SEEDS = [1, 2]
SIZE = {"height": 32, "width": 32}


class NoOpObjective:
    """`J = 0`, computed from `C_v` so that a gradient exists; Adam then leaves `v` unchanged."""

    name = "no-op"

    def __call__(self, state, cond_v: Conditioning) -> torch.Tensor:
        return (cond_v.prompt_embeds.float() * 0).flatten(1).sum(dim=1)


class RunKeepingOptimizer(PromptOptimizer):
    """A `PromptOptimizer` that keeps its last run, so tests can read `v` afterwards."""

    def start(self, *args, **kwargs):
        self.last_run = super().start(*args, **kwargs)
        return self.last_run


def generators() -> list[torch.Generator]:
    return [torch.Generator().manual_seed(seed) for seed in SEEDS]


def starting_noise(pipe) -> torch.Tensor:
    """The VP starting noise that the stock pipeline draws from `generators()`."""
    shape = (len(SEEDS), pipe.unet.config.in_channels, 16, 16)
    return randn_tensor(shape, generator=generators(), dtype=pipe.unet.dtype)


def branches(pipe, optimizer: PromptOptimizer | None = None):
    """`(C, unconditional branch, C_v with the optimizer's initial v or None)`."""
    encoder = PromptEncoder.from_pipeline(pipe)
    size = (SIZE["height"], SIZE["width"])
    with torch.no_grad():
        cond = encoder.encode(PROMPTS, size=size)
        uncond = encoder.encode_negative(None, len(PROMPTS), size)
        placeholder = None
        if optimizer is not None:
            placeholder = optimizer.start(encoder, PROMPTS, SEEDS, size).tokens.encode()
    return cond, uncond, placeholder


def with_scheduler(pipe, scheduler):
    """A pipeline of the same class sharing `pipe`'s modules, with another scheduler."""
    components = dict(pipe.components)
    components["scheduler"] = scheduler
    if "safety_checker" in components:
        components["requires_safety_checker"] = False
    else:
        components["add_watermarker"] = False
    stock = type(pipe)(**components)
    stock.set_progress_bar_config(disable=True)
    return stock


def stock_latents(pipe, scheduler, steps, conditionings=None, guidance_scale=7.5, **call_options):
    """Final latents of the stock pipeline with `scheduler`.

    With `conditionings` (one `Conditioning` per step) the conditional branch of step `i`
    is `conditionings[i]`: step 0 through the pipeline arguments, later steps through a
    `callback_on_step_end` that replaces the positive half of the embeddings.
    """
    stock = with_scheduler(pipe, scheduler)
    sdxl = hasattr(pipe, "text_encoder_2")
    kwargs = dict(call_options)
    if conditionings is None:
        kwargs["prompt"] = PROMPTS
    else:
        cond, uncond, _ = branches(pipe)
        kwargs["prompt_embeds"] = conditionings[0].prompt_embeds
        kwargs["negative_prompt_embeds"] = uncond.prompt_embeds
        if sdxl:
            kwargs["pooled_prompt_embeds"] = conditionings[0].pooled_prompt_embeds
            kwargs["negative_pooled_prompt_embeds"] = uncond.pooled_prompt_embeds

        def set_next_conditioning(pipeline, step_index, timestep, tensors):
            if step_index + 1 >= len(conditionings):
                return {}
            following = conditionings[step_index + 1]
            guided = pipeline.do_classifier_free_guidance
            outputs = {}
            embeds = tensors["prompt_embeds"]
            negative = embeds.chunk(2)[0] if guided else None
            outputs["prompt_embeds"] = (
                torch.cat([negative, following.prompt_embeds]) if guided
                else following.prompt_embeds
            )
            if sdxl:
                pooled = tensors["add_text_embeds"]
                negative_pooled = pooled.chunk(2)[0] if guided else None
                outputs["add_text_embeds"] = (
                    torch.cat([negative_pooled, following.pooled_prompt_embeds]) if guided
                    else following.pooled_prompt_embeds
                )
            return outputs

        kwargs["callback_on_step_end"] = set_next_conditioning
        inputs = ["prompt_embeds"] + (["add_text_embeds"] if sdxl else [])
        kwargs["callback_on_step_end_tensor_inputs"] = inputs
    return stock(
        num_inference_steps=steps,
        guidance_scale=guidance_scale,
        generator=generators(),
        output_type="latent",
        **SIZE,
        **kwargs,
    ).images


@contextmanager
def counting_unet_calls(pipe):
    """Count forward calls of `pipe.unet`; yields a one-element list with the count."""
    count = [0]

    def increment(module, args):
        count[0] += 1

    handle = pipe.unet.register_forward_pre_hook(increment)
    try:
        yield count
    finally:
        handle.remove()


def parameter_snapshot(pipe) -> dict[str, tuple[torch.Tensor, bool]]:
    """Every parameter of every module of `pipe`, cloned, with its `requires_grad` flag."""
    snapshot = {}
    for component, module in pipe.components.items():
        if isinstance(module, torch.nn.Module):
            for name, parameter in module.named_parameters():
                snapshot[f"{component}.{name}"] = (
                    parameter.detach().clone(),
                    parameter.requires_grad,
                )
    return snapshot


def unet_outputs(pipe, z, t, cond: Conditioning, uncond: Conditioning):
    """Raw unconditional and conditional UNet outputs, batched as the stock pipeline does."""
    both = Conditioning.cat([uncond, cond])
    timestep = t.repeat(2) if t.ndim else t
    output = pipe.unet(torch.cat([z, z]), timestep, return_dict=False, **both.unet_kwargs())[0]
    return output.chunk(2)


class ReferenceGuidedUNet(torch.nn.Module):
    """Guided raw UNet output for k-diffusion's wrappers, conditioned per sampler step.

    The step is the number of callbacks received, which is right for samplers that call
    the model once per step.
    """

    def __init__(self, pipe, conditionings, uncond, guidance_scale):
        super().__init__()
        self.pipe, self.conditionings, self.uncond = pipe, conditionings, uncond
        self.guidance_scale = guidance_scale
        self.step = 0

    def forward(self, z, t):
        cond = self.conditionings[self.step]
        output_uncond, output_cond = unet_outputs(self.pipe, z, t, cond, self.uncond)
        return output_uncond + self.guidance_scale * (output_cond - output_uncond)

    def callback(self, info):
        self.step = info["i"] + 1


def real_k_diffusion_latents(pipe, sampler_name, sigmas, conditionings, stochastic=False):
    """The real k-diffusion sampler over k-diffusion's own wrapper, guidance scale 7.5.

    With `stochastic`, each sample's noise comes from its generator after its starting
    noise, one draw per step.
    """
    from k_diffusion import external, sampling

    _, uncond, _ = branches(pipe)
    inner = ReferenceGuidedUNet(pipe, conditionings, uncond, 7.5)
    alphas = pipe.scheduler.alphas_cumprod
    if pipe.scheduler.config.prediction_type == "v_prediction":
        model = external.DiscreteVDDPMDenoiser(inner, alphas, quantize=False)
    else:
        model = external.DiscreteEpsDDPMDenoiser(inner, alphas, quantize=False)
    noise = starting_noise(pipe)
    options = {}
    if stochastic:
        streams = generators()
        for stream in streams:
            torch.randn(noise.shape[1:], generator=stream)
        options["noise_sampler"] = lambda sigma, sigma_next: torch.stack(
            [torch.randn(noise.shape[1:], generator=stream) for stream in streams]
        )
    sampler = getattr(sampling, f"sample_{sampler_name}")
    x = noise * (sigmas[0] ** 2 + 1) ** 0.5
    with torch.no_grad():
        return sampler(model, x, sigmas, callback=inner.callback, disable=True, **options)


def table_sigmas(pipe, timesteps) -> torch.Tensor:
    """`sqrt((1 - alpha) / alpha)` at integer `timesteps`, then 0."""
    alphas = pipe.scheduler.alphas_cumprod
    table = ((1 - alphas) / alphas) ** 0.5
    return torch.cat([table[timesteps], torch.zeros(1)])
