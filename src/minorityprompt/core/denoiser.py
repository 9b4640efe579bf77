"""One denoiser interface over diffusers UNets: epsilon and the Tweedie x0 estimate.

Legend (variance-preserving latents, as in DDPM and diffusers):

    z_t      latent at training timestep t, z_t = sqrt(alpha_t) z_0 + sqrt(1 - alpha_t) eps
    alpha_t  cumulative product of (1 - beta), `alphas_cumprod[t]` in diffusers
    eps      the model's noise prediction after converting its parameterization
    x0       Tweedie estimate (z_t - sqrt(1 - alpha_t) eps) / sqrt(alpha_t)

Epsilon-, v- and sample-prediction models all return the same pair (eps, x0), so objectives
and solvers never see which parameterization the checkpoint uses.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..errors import MinorityPromptError
from .conditioning import Conditioning

PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")


@dataclass(frozen=True)
class DenoiserOutput:
    """Noise prediction `eps` and clean estimate `x0` for the same input."""

    eps: Tensor
    x0: Tensor


@dataclass(frozen=True)
class GuidedOutput:
    """Predictions of one classifier-free-guided evaluation.

    `uncond` is `None` when no unconditional pass ran (guidance scale 1).
    """

    guided: DenoiserOutput
    uncond: DenoiserOutput | None
    cond: DenoiserOutput


class Denoiser:
    """Wrap a `UNet2DConditionModel` and its training schedule.

    Args:
        unet: The diffusers UNet (any module with the same call signature works).
        alphas_cumprod: The training schedule's cumulative alphas, length `T_train`.
        prediction_type: `"epsilon"`, `"v_prediction"` or `"sample"`, as in the scheduler
            config of the checkpoint.
        cross_attention_kwargs: Passed to every UNet call (LoRA scale, attention processors).

    `num_evaluations` counts UNet forward passes, one per call whatever the batch size, so that
    samplers can report their cost.
    """

    def __init__(
        self,
        unet: torch.nn.Module,
        alphas_cumprod: Tensor,
        prediction_type: str = "epsilon",
        cross_attention_kwargs: dict | None = None,
    ) -> None:
        if prediction_type not in PREDICTION_TYPES:
            raise MinorityPromptError(
                f"Unknown prediction_type {prediction_type!r}; expected one of {PREDICTION_TYPES}."
            )
        self.unet = unet
        self.alphas_cumprod = alphas_cumprod.detach().to(torch.float32).cpu()
        self.prediction_type = prediction_type
        self.cross_attention_kwargs = cross_attention_kwargs
        self.num_evaluations = 0

    @classmethod
    def from_pipeline(cls, pipe) -> Denoiser:
        """Build from a diffusers pipeline's `unet` and `scheduler`."""
        scheduler = pipe.scheduler
        return cls(
            pipe.unet,
            scheduler.alphas_cumprod,
            scheduler.config.get("prediction_type", "epsilon"),
        )

    @property
    def num_train_timesteps(self) -> int:
        return int(self.alphas_cumprod.shape[0])

    @property
    def dtype(self) -> torch.dtype:
        return next(self.unet.parameters()).dtype

    def alpha(self, timestep: Tensor | int | float, like: Tensor) -> Tensor:
        """`alpha_t` broadcastable against `like` (shape `(batch, 1, 1, 1)` or a 0-d tensor).

        Integer timesteps index the table exactly. Fractional ones, which k-diffusion's
        continuous sigmas produce, interpolate log-sigma linearly between neighbouring entries.
        """
        timestep = torch.as_tensor(timestep)
        if timestep.is_floating_point() and not torch.equal(timestep, timestep.round()):
            log_sigmas = 0.5 * torch.log((1 - self.alphas_cumprod) / self.alphas_cumprod)
            position = timestep.detach().cpu().float().clamp(0, self.num_train_timesteps - 1)
            low = position.floor().long()
            high = (low + 1).clamp(max=self.num_train_timesteps - 1)
            weight = position - low
            log_sigma = (1 - weight) * log_sigmas[low] + weight * log_sigmas[high]
            alpha = torch.sigmoid(-2 * log_sigma)
        else:
            alpha = self.alphas_cumprod[timestep.detach().cpu().long()]
        alpha = alpha.to(device=like.device, dtype=like.dtype)
        if alpha.ndim == 1:
            alpha = alpha.view(-1, *([1] * (like.ndim - 1)))
        return alpha

    def model_output(self, z: Tensor, timestep: Tensor | int, cond: Conditioning) -> Tensor:
        """Raw UNet output for latents `z` at `timestep` under `cond`."""
        self.num_evaluations += 1
        timestep = torch.as_tensor(timestep, device=z.device)
        return self.unet(
            z,
            timestep,
            cross_attention_kwargs=self.cross_attention_kwargs,
            return_dict=False,
            **cond.unet_kwargs(),
        )[0]

    def convert(self, output: Tensor, z: Tensor, timestep: Tensor | int) -> DenoiserOutput:
        """Turn a raw model output into `(eps, x0)` by the checkpoint's parameterization.

        The expressions follow diffusers' DDIM step term by term, so a sampler built on them
        reproduces the stock scheduler to rounding.
        """
        alpha_t = self.alpha(timestep, like=z)
        beta_t = 1 - alpha_t
        if self.prediction_type == "epsilon":
            eps = output
            x0 = (z - beta_t ** (0.5) * eps) / alpha_t ** (0.5)
        elif self.prediction_type == "v_prediction":
            x0 = (alpha_t**0.5) * z - (beta_t**0.5) * output
            eps = (alpha_t**0.5) * output + (beta_t**0.5) * z
        else:
            x0 = output
            eps = (z - alpha_t ** (0.5) * x0) / beta_t ** (0.5)
        return DenoiserOutput(eps=eps, x0=x0)

    def predict(self, z: Tensor, timestep: Tensor | int, cond: Conditioning) -> DenoiserOutput:
        """`(eps, x0)` for one branch, without guidance."""
        return self.convert(self.model_output(z, timestep, cond), z, timestep)

    def predict_guided(
        self,
        z: Tensor,
        timestep: Tensor | int,
        cond: Conditioning,
        uncond: Conditioning | None,
        guidance_scale: float,
    ) -> GuidedOutput:
        """Classifier-free guidance, both branches in one batched UNet call.

        With `guidance_scale == 1` or no `uncond` there is no unconditional pass and the guided
        prediction is the conditional one. Guidance mixes raw model outputs, as diffusers
        pipelines do, and then converts; for v- and sample-prediction this equals mixing
        epsilon, because the conversion is affine in the model output.
        """
        if guidance_scale == 1 or uncond is None:
            conditional = self.predict(z, timestep, cond)
            return GuidedOutput(guided=conditional, uncond=None, cond=conditional)

        output = self.model_output(torch.cat([z, z]), timestep, Conditioning.cat([uncond, cond]))
        output_uncond, output_cond = output.chunk(2)
        output_guided = output_uncond + guidance_scale * (output_cond - output_uncond)
        return GuidedOutput(
            guided=self.convert(output_guided, z, timestep),
            uncond=self.convert(output_uncond, z, timestep),
            cond=self.convert(output_cond, z, timestep),
        )
