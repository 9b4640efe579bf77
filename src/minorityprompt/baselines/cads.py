"""CADS, condition-annealed sampling (Sadat et al., ICLR 2024), as a step hook.

At each step the conditioning `y` is replaced by a noised copy whose noise fades as sampling
proceeds:

    gamma(t) = 1                          t <= tau1
             = (tau2 - t) / (tau2 - tau1)  tau1 < t < tau2
             = 0                          t >= tau2
    y_hat    = sqrt(gamma) y + s sqrt(1 - gamma) n,   n ~ N(0, I)
    y_out    = psi * rescale(y_hat) + (1 - psi) * y_hat

with `t` in [0, 1] and 1 the pure-noise end, and `rescale` restoring each sample's mean and
standard deviation of `y`. By default `t = timestep / T_train`; `time="step"` uses the step
position `1 - step_index / num_steps` instead.

Which tensors are noised, by default:
- the conditional branch's token embeddings: always;
- SDXL's pooled vector of the conditional branch: yes (`noise_pooled=True`), because it
  carries the prompt as much as the token embeddings do;
- the unconditional branch: no (`noise_uncond=False`), so guidance extrapolates away from
  the same null prediction as plain CFG;
- SDXL's `add_time_ids`: never, they are image-size conditioning.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import torch
from torch import Tensor

from ..core.conditioning import Conditioning
from ..core.seeding import generators_for
from ..core.state import StepInputs, StepState
from ..errors import MinorityPromptError

logger = logging.getLogger(__name__)

CADS_PRESETS: dict[str, dict[str, float]] = {
    # Defaults of the CADS paper.
    "default": {"tau1": 0.6, "tau2": 0.9, "noise_scale": 0.25, "psi": 1.0},
    # Used with 4-step SDXL-Lightning in the MinorityPrompt paper's comparison.
    "sdxl-lightning": {"tau1": 0.8, "tau2": 1.0, "noise_scale": 0.1, "psi": 1.0},
}
TIME_CONVENTIONS = ("timestep", "step")


def cads_gamma(t: Tensor | float, tau1: float, tau2: float) -> Tensor:
    """Compute the annealing weight `gamma(t)`: 1 near clean data, 0 near pure noise.

    With `tau1 == tau2` the schedule is a step: 1 for `t <= tau1`, 0 above.
    """
    t = torch.as_tensor(t, dtype=torch.float64)
    if tau2 == tau1:
        return (t <= tau1).to(torch.float64)
    return ((tau2 - t) / (tau2 - tau1)).clamp(0.0, 1.0)


def anneal_condition(y: Tensor, gamma: float, noise_scale: float, noise: Tensor) -> Tensor:
    """`sqrt(gamma) y + noise_scale sqrt(1 - gamma) noise`, computed in fp32."""
    return math.sqrt(gamma) * y.float() + noise_scale * math.sqrt(1.0 - gamma) * noise.float()


def rescale_to_reference(noised: Tensor, reference: Tensor, psi: float) -> Tensor:
    """Mix `noised`, moved to each sample's mean and std of `reference`, with `noised` itself.

    Statistics are per sample over every non-batch dimension (unbiased std, as `Tensor.std`).
    `psi = 1` returns the rescaled tensor, `psi = 0` returns `noised` unchanged.
    """
    dims = tuple(range(1, noised.ndim))
    noised = noised.float()
    reference = reference.float()
    noised_mean = noised.mean(dim=dims, keepdim=True)
    noised_std = noised.std(dim=dims, keepdim=True).clamp_min(torch.finfo(torch.float32).tiny)
    rescaled = (noised - noised_mean) / noised_std * reference.std(
        dim=dims, keepdim=True
    ) + reference.mean(dim=dims, keepdim=True)
    return psi * rescaled + (1.0 - psi) * noised


class CADS:
    """The CADS step hook: anneal noise on the conditioning, strongest at the start of sampling.

    Args:
        tau1: Below this `t` the conditioning is clean.
        tau2: At and above this `t` the conditioning is pure (scaled) noise.
        noise_scale: `s`, the standard deviation of the added noise.
        psi: Mixing weight of the rescaled conditioning, in [0, 1].
        noise_uncond: Also noise the unconditional branch.
        noise_pooled: Also noise SDXL's pooled vector.
        time: `"timestep"` for `t = timestep / T_train`, `"step"` for
            `t = 1 - step_index / num_steps`.
        seeds: One seed per sample. Each sample's noise then comes from its own generator,
            re-created at step 0 of every run, so it does not depend on the batch. Without
            seeds the noise comes from torch's global generator.

    `history` lists `(step_index, t, gamma)` of the latest run's steps. The hook changes only
    the conditioning of the step it is called for.
    """

    def __init__(
        self,
        tau1: float = 0.6,
        tau2: float = 0.9,
        noise_scale: float = 0.25,
        psi: float = 1.0,
        noise_uncond: bool = False,
        noise_pooled: bool = True,
        time: str = "timestep",
        seeds: Sequence[int] | None = None,
    ) -> None:
        if not 0.0 <= tau1 <= tau2 <= 1.0:
            raise MinorityPromptError(
                f"CADS needs 0 <= tau1 <= tau2 <= 1, got tau1={tau1}, tau2={tau2}; the "
                "defaults are tau1=0.6, tau2=0.9."
            )
        if noise_scale < 0:
            raise MinorityPromptError(f"noise_scale must be non-negative, got {noise_scale}.")
        if not 0.0 <= psi <= 1.0:
            raise MinorityPromptError(f"psi must lie in [0, 1], got {psi}; 1 rescales fully.")
        if time not in TIME_CONVENTIONS:
            raise MinorityPromptError(
                f"Unknown time convention {time!r}; expected one of {TIME_CONVENTIONS}."
            )
        self.tau1 = float(tau1)
        self.tau2 = float(tau2)
        self.noise_scale = float(noise_scale)
        self.psi = float(psi)
        self.noise_uncond = noise_uncond
        self.noise_pooled = noise_pooled
        self.time = time
        self.seeds = None if seeds is None else [int(seed) for seed in seeds]
        self.history: list[tuple[int, float, float]] = []
        self._generators: list[torch.Generator] | None = None

    @classmethod
    def preset(cls, name: str, **overrides) -> CADS:
        """A CADS hook with the settings of a preset in `CADS_PRESETS`, updated by `overrides`."""
        if name not in CADS_PRESETS:
            raise MinorityPromptError(
                f"Unknown CADS preset {name!r}; available presets are {sorted(CADS_PRESETS)}."
            )
        return cls(**{**CADS_PRESETS[name], **overrides})

    def time_of(self, state: StepState) -> float:
        """Return the time `t` of a step, in [0, 1] with 1 at pure noise."""
        if self.time == "step":
            return 1.0 - state.step_index / state.num_steps
        timestep = float(torch.as_tensor(state.timestep).float().mean())
        return timestep / state.denoiser.num_train_timesteps

    def _noise_like(self, tensor: Tensor) -> Tensor:
        if self._generators is None:
            return torch.randn(tensor.shape, dtype=torch.float32).to(tensor.device)
        if len(self._generators) != tensor.shape[0]:
            raise MinorityPromptError(
                f"CADS has {len(self._generators)} seeds for a batch of {tensor.shape[0]}; give "
                "one seed per sample."
            )
        draws = [
            torch.randn(tensor.shape[1:], generator=generator, dtype=torch.float32)
            for generator in self._generators
        ]
        return torch.stack(draws).to(tensor.device)

    def _anneal(self, y: Tensor, gamma: float) -> Tensor:
        noised = anneal_condition(y, gamma, self.noise_scale, self._noise_like(y))
        if self.psi > 0:
            noised = rescale_to_reference(noised, y, self.psi)
        return noised.to(y.dtype)

    def _anneal_branch(self, branch: Conditioning, gamma: float) -> Conditioning:
        prompt_embeds = self._anneal(branch.prompt_embeds, gamma)
        pooled = branch.pooled_prompt_embeds
        if pooled is not None and self.noise_pooled:
            pooled = self._anneal(pooled, gamma)
        return branch.with_embeds(prompt_embeds, pooled)

    def before_step(self, state: StepState) -> StepInputs:
        if state.step_index == 0:
            self.history = []
            self._generators = None
        if self.seeds is not None and self._generators is None:
            self._generators = generators_for(self.seeds, "cads")
        t = self.time_of(state)
        gamma = float(cads_gamma(t, self.tau1, self.tau2))
        self.history.append((state.step_index, t, gamma))
        if gamma >= 1.0:
            return StepInputs(state.z_t, state.cond, state.uncond)

        cond = self._anneal_branch(state.cond, gamma)
        uncond = state.uncond
        if uncond is not None and self.noise_uncond:
            uncond = self._anneal_branch(uncond, gamma)
        return StepInputs(state.z_t, cond, uncond)
