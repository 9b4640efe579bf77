"""A small differentiable stand-in for a conditional UNet, for exact gradient checks.

The model is nonlinear in the latent and in the conditioning, with an interaction between the
two, so gradients through every path of an objective are non-zero and distinct. It runs in
float64 to let tests compare gradients to 1e-9.
"""

from __future__ import annotations

import torch

from minorityprompt.core.conditioning import Conditioning
from minorityprompt.core.denoiser import Denoiser
from minorityprompt.core.state import StepState

CHANNELS = 4
COND_DIM = 8
SEQUENCE = 5


class ToyUNet(torch.nn.Module):
    """`eps = tanh(A z (1 + t / 1000) + (1 + A z) * (W mean_seq(c)))`, per pixel."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        mix = torch.randn(CHANNELS, CHANNELS, generator=generator, dtype=torch.float64)
        projection = torch.randn(COND_DIM, CHANNELS, generator=generator, dtype=torch.float64)
        self.mix = torch.nn.Parameter(mix / CHANNELS**0.5)
        self.projection = torch.nn.Parameter(projection / COND_DIM**0.5)

    def forward(
        self,
        z,
        timestep,
        encoder_hidden_states,
        cross_attention_kwargs=None,
        added_cond_kwargs=None,
        return_dict=False,
    ):
        t = torch.as_tensor(timestep, dtype=z.dtype, device=z.device).reshape(-1, 1, 1, 1)
        mixed = torch.einsum("bchw,cd->bdhw", z, self.mix)
        shift = (encoder_hidden_states.mean(dim=1) @ self.projection)[:, :, None, None]
        return (torch.tanh(mixed * (1 + t / 1000) + (1 + mixed) * shift),)


def toy_denoiser(seed: int = 0) -> Denoiser:
    """A `Denoiser` over `ToyUNet` with Stable Diffusion's scaled-linear schedule."""
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
    alphas_cumprod = torch.cumprod(1 - betas, dim=0)
    denoiser = Denoiser(ToyUNet(seed), alphas_cumprod.float())
    # Keep the schedule in float64 too, so that gradient checks are not limited by fp32.
    denoiser.alphas_cumprod = alphas_cumprod
    return denoiser


def toy_conditioning(batch: int, seed: int, requires_grad: bool = False) -> Conditioning:
    generator = torch.Generator().manual_seed(seed)
    embeds = torch.randn(batch, SEQUENCE, COND_DIM, generator=generator, dtype=torch.float64)
    return Conditioning(embeds.requires_grad_(requires_grad))


def toy_latent(batch: int, seed: int, size: int = 4) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, CHANNELS, size, size, generator=generator, dtype=torch.float64)


def toy_state(
    denoiser: Denoiser,
    z_t: torch.Tensor,
    cond: Conditioning,
    uncond: Conditioning | None = None,
    timestep: int = 600,
    guidance_scale: float = 7.5,
    noise_seed: int = 0,
) -> StepState:
    """A step state whose noise generators are freshly seeded, so every call draws alike."""
    timestep_tensor = torch.tensor(timestep)
    return StepState(
        z_t=z_t,
        step_index=0,
        num_steps=10,
        timestep=timestep_tensor,
        alpha_t=denoiser.alpha(timestep_tensor, like=z_t.new_zeros(())),
        next_timestep=None,
        cond=cond,
        uncond=uncond,
        guidance_scale=guidance_scale,
        denoiser=denoiser,
        noise_generators=[
            torch.Generator().manual_seed(noise_seed + index) for index in range(z_t.shape[0])
        ],
    )
