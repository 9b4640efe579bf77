"""A research objective: move the clean estimate away from the base prompt's estimate."""

import torch

from minorityprompt import Conditioning, StepState, register_objective


@register_objective("novelty")
class NoveltyObjective:
    """`J = ||x0_hat(z_t, C_v) - sg(x0_hat(z_t, C))||^2` per sample, without guidance.

    Args:
        scale: Multiplies J, so that it can be weighed against other objectives.
    """

    name = "novelty"

    def __init__(self, scale: float = 1.0) -> None:
        self.scale = scale

    def __call__(self, state: StepState, cond_v: Conditioning) -> torch.Tensor:
        denoiser = state.denoiser
        x0_v = denoiser.predict(state.z_t, state.timestep, cond_v).x0
        with torch.no_grad():
            x0_base = denoiser.predict(state.z_t, state.timestep, state.cond).x0
        distance = (x0_v.float() - x0_base.float()).pow(2).flatten(1).sum(dim=1)
        return self.scale * distance
