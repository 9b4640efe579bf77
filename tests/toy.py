"""A toy conditional denoiser with exact scores: Gaussian data whose mean is the prompt.

Data are x0 ~ N(mu, sigma^2 I) in `dim` dimensions, where mu is the first token embedding of
the conditioning. The noised marginal at training timestep t is
N(sqrt(a_t) mu, (a_t sigma^2 + 1 - a_t) I), so the exact epsilon prediction is
sqrt(1 - a_t) (z - sqrt(a_t) mu) / (a_t sigma^2 + 1 - a_t).
"""

from __future__ import annotations

import math

import torch

from minorityprompt import Conditioning, Denoiser


def sd_alphas_cumprod() -> torch.Tensor:
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
    return torch.cumprod(1 - betas, dim=0)


class GaussianEpsModel(torch.nn.Module):
    """Exact epsilon of Gaussian data, with the UNet call signature."""

    def __init__(self, sigma: float, alphas_cumprod: torch.Tensor) -> None:
        super().__init__()
        self.sigma = sigma
        self.register_buffer("alphas_cumprod", alphas_cumprod.double())
        # A parameter so that freezing and parameter checks have something to act on.
        self.scale = torch.nn.Parameter(torch.ones((), dtype=torch.float64))

    def forward(self, z, timestep, encoder_hidden_states, return_dict=False, **unused):
        timestep = torch.as_tensor(timestep)
        if timestep.is_floating_point():
            raise AssertionError("the toy model takes integer timesteps only")
        alpha = self.alphas_cumprod[timestep.long()].to(z.dtype)
        if alpha.ndim == 1:
            alpha = alpha.view(-1, *([1] * (z.ndim - 1)))
        mu = encoder_hidden_states[:, 0, : z.shape[-1]].to(z.dtype)
        variance = alpha * self.sigma**2 + 1 - alpha
        return (self.scale * (1 - alpha) ** 0.5 * (z - alpha**0.5 * mu) / variance,)

    def log_density(self, x0: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
        dim = x0.shape[-1]
        squared = (x0 - mu).pow(2).sum(dim=-1)
        return -0.5 * squared / self.sigma**2 - dim * math.log(self.sigma) - 0.5 * dim * math.log(
            2 * math.pi
        )


def gaussian_denoiser(sigma: float) -> tuple[Denoiser, GaussianEpsModel]:
    alphas = sd_alphas_cumprod()
    model = GaussianEpsModel(sigma, alphas)
    denoiser = Denoiser(model, alphas, "epsilon")
    # The table is kept in fp64 so that identities hold to fp64 rounding.
    denoiser.alphas_cumprod = alphas
    return denoiser, model


def conditioning(mu: torch.Tensor) -> Conditioning:
    """A conditioning whose first token embedding is `mu`, shape `(batch, 1, dim)`."""
    return Conditioning(mu.unsqueeze(1))
