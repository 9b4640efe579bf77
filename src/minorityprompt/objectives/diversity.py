"""The diversity objective: pairwise repulsion of the x0 estimates within a batch.

    J = sum_i sum_{j != i} ||x0_i - x0_j||^2,    x0_i = x0_hat(z_t^i, t, C_v_i)

over a batch that shares one prompt, each sample with its own learnable tokens. The objective
returns each sample's share `J_i = sum_j ||x0_i - x0_j||^2`, with the gradient flowing
through every sample's estimate, so `mean_i J_i = J / B` and the optimizer's ascent of the
mean is ascent of the batch `J` (scaled by 1/B).

The pairwise sum is computed through the batch mean `m` of the estimates:

    sum_j ||x0_i - x0_j||^2 = B ||x0_i - m||^2 + sum_j ||x0_j - m||^2

which costs O(B D) instead of O(B^2 D) and, being centred, does not cancel large norms
against each other as the Gram identity `|a|^2 + |b|^2 - 2 a.b` does.
"""

from __future__ import annotations

from torch import Tensor

from ..core.conditioning import Conditioning
from ..core.state import StepState
from ..errors import MinorityPromptError
from .base import register_objective


def pairwise_squared_distance_sums(x: Tensor) -> Tensor:
    """`sum_j ||x_i - x_j||^2` for each row `i` of `x`, in fp32, shape `(batch,)`.

    `x` has shape `(batch, ...)`; every non-batch dimension counts as a coordinate.
    """
    flat = x.float().flatten(1)
    centred = flat - flat.mean(dim=0, keepdim=True)
    spread = centred.pow(2).sum(dim=1)
    return flat.shape[0] * spread + spread.sum()


def mean_pairwise_squared_distance(x: Tensor) -> Tensor:
    """Mean of `||x_i - x_j||^2` over ordered pairs `i != j`, a 0-d fp32 tensor."""
    batch = x.shape[0]
    if batch < 2:
        raise MinorityPromptError(f"A pairwise distance needs at least 2 rows, got {batch}.")
    return pairwise_squared_distance_sums(x).sum() / (batch * (batch - 1))


class DiversityObjective:
    """Repel each sample's x0 estimate from the others in the batch.

    Args:
        guided_estimates: Use classifier-free-guided x0 estimates instead of the conditional
            ones. Off by default: the repulsion acts on `x0_hat(z_t, C_v)` without guidance.

    The batch must have at least two samples. All samples should share one prompt, since the
    objective pushes apart whatever the batch contains, prompt differences included.
    """

    name = "diversity"

    def __init__(self, guided_estimates: bool = False) -> None:
        self.guided_estimates = guided_estimates

    def __call__(self, state: StepState, cond_v: Conditioning) -> Tensor:
        if state.batch_size < 2:
            raise MinorityPromptError(
                f"The diversity objective needs a batch of at least 2 samples sharing a prompt, "
                f"got a batch of {state.batch_size}; generate several seeds of the prompt together."
            )
        denoiser = state.denoiser
        if self.guided_estimates and state.uncond is not None:
            x0 = denoiser.predict_guided(
                state.z_t, state.timestep, cond_v, state.uncond, state.guidance_scale
            ).guided.x0
        else:
            x0 = denoiser.predict(state.z_t, state.timestep, cond_v).x0
        return pairwise_squared_distance_sums(x0)


register_objective("diversity", DiversityObjective)
