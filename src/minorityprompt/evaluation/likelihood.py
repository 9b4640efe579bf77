"""The probability-flow likelihood of generated images' latents under their diffusion model.

Each PNG is encoded with the pipeline's VAE: the latent is the mean of the encoder's
distribution, scaled as the pipeline scales latents before decoding. Its log-likelihood comes
from `metrics.ode_log_likelihood`, with the UNet's noise prediction for the image's own prompt
and no classifier-free guidance. It is the likelihood of the latent, not of the pixels.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from tqdm.auto import tqdm

from ..core.denoiser import Denoiser
from ..core.prompt_encoder import PromptEncoder
from ..errors import MinorityPromptError
from ..metrics.likelihood import ode_log_likelihood

logger = logging.getLogger(__name__)

LIKELIHOOD_SPACE = "latent"
LIKELIHOOD_NOTE = (
    "Latent bits/dim: probability-flow ODE likelihood of each image's VAE latent (the mean "
    "of the encoder's distribution, scaled as the pipeline scales latents) under the "
    "diffusion model, conditioned on the image's prompt without guidance. It is the latent "
    "likelihood, not the pixel likelihood. Higher bits/dim means the model finds the sample "
    "less likely."
)


@dataclass(frozen=True)
class LikelihoodSettings:
    """Integration settings of `ode_log_likelihood`.

    Attributes:
        method: "RK45", "RK23", "DOP853" (adaptive, with `rtol` and `atol`) or "rk4" (fixed
            `num_steps` steps).
        num_probes: Hutchinson probes per sample for the divergence.
        batch_size: Latents integrated together. Adaptive solvers choose one step size for
            the whole batch, so a sample's value depends slightly on its batch; "rk4" steps
            do not.
        seed: Seed of the probe vectors.
    """

    method: str = "RK45"
    rtol: float = 1e-5
    atol: float = 1e-5
    num_steps: int = 100
    num_probes: int = 4
    batch_size: int = 8
    seed: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


ImageSource = Image.Image | str | Path


def open_rgb(image: ImageSource) -> Image.Image:
    """Return `image` as an RGB PIL image, reading it first if it is a path."""
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    with Image.open(image) as opened:
        return opened.convert("RGB")


def images_to_tensor(images: Sequence[Image.Image]) -> Tensor:
    """Stack RGB images as a (N, 3, H, W) float32 tensor in [-1, 1], as the VAE expects."""
    arrays = [np.asarray(image.convert("RGB"), dtype=np.float32) for image in images]
    sizes = {array.shape for array in arrays}
    if len(sizes) != 1:
        raise MinorityPromptError(
            f"Images of one likelihood batch have different sizes {sorted(sizes)}; evaluate "
            "runs of different image sizes separately."
        )
    stacked = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)
    return stacked / 127.5 - 1.0


@torch.no_grad()
def encode_latents(pipe, images: Sequence[Image.Image]) -> Tensor:
    """Encode images to the latents that `pipe`'s UNet denoises, in float32.

    This inverts `generation.decode_latents`: the latent is the encoder's mean, shifted and
    scaled by the VAE's `latents_mean`/`latents_std` when the config has them, and multiplied
    by `scaling_factor`.
    """
    vae = pipe.vae
    config = vae.config
    # As when decoding, a float16 VAE with `force_upcast` (SDXL's) runs in float32.
    original_dtype = vae.dtype
    upcast = original_dtype == torch.float16 and getattr(config, "force_upcast", False)
    if upcast:
        vae.to(torch.float32)
    try:
        pixels = images_to_tensor(images).to(device=vae.device, dtype=vae.dtype)
        mean = vae.encode(pixels).latent_dist.mean.float()
    finally:
        if upcast:
            vae.to(original_dtype)
    latents_mean = getattr(config, "latents_mean", None)
    latents_std = getattr(config, "latents_std", None)
    if latents_mean is not None and latents_std is not None:
        shift = torch.tensor(latents_mean).view(1, -1, 1, 1).to(mean)
        scale = torch.tensor(latents_std).view(1, -1, 1, 1).to(mean)
        return (mean - shift) * config.scaling_factor / scale
    return mean * config.scaling_factor


def latent_likelihood(
    pipe,
    images: Sequence[ImageSource],
    prompts: Sequence[str],
    settings: LikelihoodSettings = LikelihoodSettings(),
    progress: bool = False,
) -> dict[str, Tensor]:
    """Compute the latent log-likelihood and bits per dimension of each image.

    Args:
        pipe: The diffusers pipeline that generated the images.
        images: PIL images or image files, all of one size; files are read one batch at a
            time.
        prompts: The user's prompt of each image; the UNet is conditioned on it, without
            classifier-free guidance.
        settings: Solver, tolerances, probes and batch size.
        progress: Show a progress bar over batches.

    Returns:
        `{"log_likelihood": (N,) nats, "bits_per_dim": (N,), "function_evaluations": (N,)}`,
        float64 CPU tensors. Bits per dimension count the latent's dimensions.
    """
    if len(images) != len(prompts):
        raise MinorityPromptError(
            f"got {len(images)} images but {len(prompts)} prompts; pass one prompt per image."
        )
    if settings.batch_size < 1:
        raise MinorityPromptError(
            f"The likelihood batch size must be at least 1, got {settings.batch_size}."
        )
    denoiser = Denoiser.from_pipeline(pipe)
    encoder = PromptEncoder.from_pipeline(pipe)
    generator = torch.Generator().manual_seed(settings.seed)
    log_likelihoods, bits, evaluations = [], [], []
    starts = range(0, len(images), settings.batch_size)
    for start in tqdm(starts, desc="likelihood", unit="batch", disable=not progress):
        batch_images = [open_rgb(image) for image in images[start : start + settings.batch_size]]
        batch_prompts = list(prompts[start : start + settings.batch_size])
        latents = encode_latents(pipe, batch_images)
        height, width = batch_images[0].height, batch_images[0].width
        with torch.no_grad():
            cond = encoder.encode(batch_prompts, size=(height, width))

        def eps_fn(z: Tensor, timesteps: Tensor, cond=cond) -> Tensor:
            # The ODE runs in float32 whatever the UNet's dtype.
            return denoiser.predict(z.to(denoiser.dtype), timesteps, cond).eps.float()

        result = ode_log_likelihood(
            latents,
            eps_fn,
            pipe.scheduler.alphas_cumprod,
            method=settings.method,
            rtol=settings.rtol,
            atol=settings.atol,
            num_steps=settings.num_steps,
            divergence="hutchinson",
            num_probes=settings.num_probes,
            generator=generator,
        )
        log_likelihoods.append(result.log_likelihood.double().cpu())
        bits.append(result.bits_per_dim.double().cpu())
        evaluations.append(
            torch.full((len(batch_images),), result.num_function_evaluations, dtype=torch.float64)
        )
    return {
        "log_likelihood": torch.cat(log_likelihoods),
        "bits_per_dim": torch.cat(bits),
        "function_evaluations": torch.cat(evaluations),
    }
