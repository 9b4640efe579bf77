"""Prompt optimization inside k-diffusion samplers (`k_diffusion.sampling.sample_*`).

k-diffusion samplers integrate in the variance-exploding parameterization
`x = z_t / sqrt(alpha_t) = x0 + sigma eps`, call `model(x, sigma)` for the clean estimate,
and report each step through `callback({'x', 'i', 'sigma', 'sigma_hat', 'denoised'})` after
the step's first model call. `KDiffusionDenoiser` is that model: k-diffusion's own
`DiscreteEpsDDPMDenoiser` (or `DiscreteVDDPMDenoiser` for v-prediction) over this library's
`Denoiser`, with classifier-free guidance and a step hook such as the prompt optimizer.

Step attribution. Some samplers call the model several times per step (Heun, DPM-2,
DPM-Solver++(2S), DPM-Solver++ SDE). The hook is therefore keyed on the sampler's steps, not
on model calls: a model call belongs to step i when the sampler has reported i steps through
its callback. k-diffusion reports step i after that step's first model call. A noise level
cannot tell a step's later calls from the next step's first call, because Heun's second
call of step i runs at exactly `sigmas[i + 1]`, and DPM-Solver++(2S) ancestral with eta = 1
evaluates there up to rounding. So the hook for step i runs once, at the first model call
after step i - 1 is reported. For a sampler with one model call per step, that is step i's
own call. For a sampler with more calls, it is step i - 1's second call, at a noise level
between `sigmas[i]` and `sigmas[i - 1]`, and the rest of step i - 1 uses step i's inputs.
The hook's `StepState` always describes the call it runs at: its latent, and the timestep
and `alpha_t` of that call's sigma.

Samplers keep their own latent, so hooks may change the conditioning but not `z_t`.
"""

from __future__ import annotations

import copy
import inspect
import logging
from collections.abc import Callable, Sequence

import torch
from diffusers.utils.torch_utils import randn_tensor
from k_diffusion import external as k_external
from k_diffusion import sampling as k_sampling
from torch import Tensor

from ..core.conditioning import Conditioning
from ..core.denoiser import Denoiser
from ..core.optimizer import PromptOptimizer
from ..core.state import StepInputs, StepState
from ..errors import MinorityPromptError
from ..generation import GenerationResult, decode_latents
from ..solvers.base import StepHook
from ..solvers.loop import start_session

logger = logging.getLogger(__name__)


class _GuidedModelOutput(torch.nn.Module):
    """The raw guided UNet output at a VP latent, the inner model of k-diffusion's wrappers.

    Returns epsilon (or v for v-prediction models); sample-prediction outputs are converted
    to epsilon, because k-diffusion has no wrapper for them.
    """

    def __init__(self, denoiser: Denoiser) -> None:
        super().__init__()
        self.denoiser = denoiser

    def forward(
        self,
        z: Tensor,
        t: Tensor,
        cond: Conditioning,
        uncond: Conditioning | None,
        guidance_scale: float,
    ) -> Tensor:
        denoiser = self.denoiser
        if uncond is None or guidance_scale == 1:
            output = denoiser.model_output(z, t, cond)
        else:
            both = denoiser.model_output(
                torch.cat([z, z]), torch.cat([t, t]), Conditioning.cat([uncond, cond])
            )
            output_uncond, output_cond = both.chunk(2)
            output = output_uncond + guidance_scale * (output_cond - output_uncond)
        if denoiser.prediction_type == "sample":
            return denoiser.convert(output, z, t).eps
        return output


class KDiffusionDenoiser(torch.nn.Module):
    """The model for k-diffusion samplers: guided clean estimates, with a step hook.

    Args:
        denoiser: The model.
        cond: Base conditioning `C`.
        uncond: Unconditional branch; `None` to run without guidance.
        guidance_scale: Classifier-free guidance weight; 1 runs no unconditional pass.
        hook: Called once per sampler step (see the module docstring for the model call it
            runs at); `PromptOptimizer.start(...)` returns one.
        quantize: Round each sigma to the nearest training timestep before the UNet call,
            as k-diffusion's `quantize=True`; otherwise timesteps are fractional.

    The hook's inputs apply from the call it runs at until the next step's hook. A
    multistep sampler keeps the clean estimates of earlier steps, so an edit at step k also
    reaches later updates through that history (DPM-Solver++(2M) uses step k's estimate
    again at step k + 1). The hook receives `StepState.z_t = x / sqrt(sigma^2 + 1)`, the
    UNet's input, with the timestep and `alpha_t = 1 / (1 + sigma^2)` of the call's sigma.
    """

    def __init__(
        self,
        denoiser: Denoiser,
        cond: Conditioning,
        uncond: Conditioning | None = None,
        guidance_scale: float = 1.0,
        hook: StepHook | None = None,
        quantize: bool = False,
    ) -> None:
        super().__init__()
        self.denoiser = denoiser
        self.cond = cond
        self.uncond = uncond if guidance_scale != 1 else None
        self.guidance_scale = float(guidance_scale)
        self.hook = hook
        inner = _GuidedModelOutput(denoiser)
        alphas_cumprod = denoiser.alphas_cumprod
        if denoiser.prediction_type == "v_prediction":
            self.wrapper = k_external.DiscreteVDDPMDenoiser(inner, alphas_cumprod, quantize)
        else:
            self.wrapper = k_external.DiscreteEpsDDPMDenoiser(inner, alphas_cumprod, quantize)
        self._sigmas: Tensor | None = None
        self._completed_steps = 0
        self._step_inputs: dict[int, StepInputs] = {}
        self._user_callback: Callable[[dict], None] | None = None

    @property
    def sigma_min(self) -> Tensor:
        return self.wrapper.sigma_min

    @property
    def sigma_max(self) -> Tensor:
        return self.wrapper.sigma_max

    def sigma_to_t(self, sigma: Tensor) -> Tensor:
        return self.wrapper.sigma_to_t(sigma)

    def sample(
        self,
        sampler: Callable,
        z: Tensor,
        sigmas: Tensor,
        generators: Sequence[torch.Generator] | None = None,
        progress: bool = True,
        **sampler_options,
    ) -> Tensor:
        """Run `sampler` from the VP noise `z` along `sigmas`; return the VP latent at the end.

        `x = z * sqrt(sigma_0^2 + 1)` starts the sampler, so a standard normal `z` is
        the VP starting noise that diffusers' DDIM and DPM-Solver pipelines use. (diffusers'
        Euler scheduler with `"trailing"` or `"linspace"` spacing starts from
        `z * sigma_0` instead.) With `sigmas` ending at 0 the returned latent is the clean
        sample. Samplers that take a `noise_sampler` get `per_sample_noise_sampler` over
        `generators`. `sampler_options` may override it and pass any other option (`eta`,
        `s_churn`, a `callback` of your own, ...).
        """
        sigmas = torch.as_tensor(sigmas, dtype=torch.float32).to(z.device)
        check_sigmas(sigmas)
        parameters = inspect.signature(sampler).parameters
        if "sigmas" not in parameters:
            raise MinorityPromptError(
                f"Sampler {getattr(sampler, '__name__', sampler)!r} takes no `sigmas` "
                "schedule (adaptive samplers such as sample_dpm_adaptive choose their own "
                "steps), so its model calls cannot be mapped to steps. Use a sampler with a "
                "fixed schedule, such as k_diffusion.sampling.sample_dpmpp_2m."
            )

        self.wrapper.to(z.device)
        self._sigmas = sigmas
        self._completed_steps = 0
        self._step_inputs = {}
        self._user_callback = sampler_options.pop("callback", None)
        if generators is not None and "noise_sampler" in parameters:
            sampler_options.setdefault("noise_sampler", per_sample_noise_sampler(z, generators))
        if "disable" in parameters:
            sampler_options.setdefault("disable", not progress)

        x = z * (sigmas[0] ** 2 + 1) ** 0.5
        x = sampler(self, x, sigmas, callback=self._on_step_end, **sampler_options)
        num_steps = len(sigmas) - 1
        if self._completed_steps != num_steps:
            logger.warning(
                "Sampler %s reported %d of %d steps through its callback, so the step hook "
                "ran on the wrong steps. Samplers must call `callback` once per step.",
                getattr(sampler, "__name__", sampler),
                self._completed_steps,
                num_steps,
            )
        return x / (sigmas[-1] ** 2 + 1) ** 0.5

    def _on_step_end(self, info: dict) -> None:
        # k-diffusion calls this after the first model call of step info["i"].
        self._completed_steps = int(info["i"]) + 1
        if self._user_callback is not None:
            self._user_callback(info)

    def step_index(self) -> int:
        """Return the step of the next model call: the number of steps reported so far."""
        return min(self._completed_steps, len(self._sigmas) - 2)

    def forward(self, x: Tensor, sigma: Tensor) -> Tensor:
        """Return the guided clean estimate at `x`, noise level `sigma` (one per sample)."""
        if self._sigmas is None:
            raise MinorityPromptError(
                "KDiffusionDenoiser has no step schedule. Run samplers through its "
                "sample(sampler, z, sigmas) method."
            )
        k = self.step_index()
        if k not in self._step_inputs:
            self._step_inputs[k] = self._run_hook(k, x, sigma)
        inputs = self._step_inputs[k]
        return self.wrapper(
            x, sigma, cond=inputs.cond, uncond=inputs.uncond, guidance_scale=self.guidance_scale
        )

    def _run_hook(self, k: int, x: Tensor, sigma: Tensor) -> StepInputs:
        """Build step k's state at this call and return the hook's inputs for the step."""
        z_t = x * (1 / (sigma**2 + 1) ** 0.5).view(-1, *([1] * (x.ndim - 1)))
        if self.hook is None:
            return StepInputs(z_t, self.cond, self.uncond)
        level = sigma.flatten()[:1]
        next_level = self._sigmas[k + 1 : k + 2]
        state = StepState(
            z_t=z_t,
            step_index=k,
            num_steps=len(self._sigmas) - 1,
            timestep=self.sigma_to_t(level)[0],
            alpha_t=(1 / (1 + level**2))[0],
            next_timestep=self.sigma_to_t(next_level)[0] if float(next_level) > 0 else None,
            cond=self.cond,
            uncond=self.uncond,
            guidance_scale=self.guidance_scale,
            denoiser=self.denoiser,
        )
        inputs = self.hook.before_step(state)
        if inputs.z is not state.z_t:
            raise MinorityPromptError(
                "A step hook moved the latent, but k-diffusion samplers keep their own latent "
                "and cannot continue from it. Use this library's solvers (generate()) for "
                "hooks that change z_t."
            )
        return inputs


def check_sigmas(sigmas: Tensor) -> None:
    """Raise unless `sigmas` is a 1-d, non-increasing schedule of at least two levels."""
    if sigmas.ndim != 1 or len(sigmas) < 2:
        raise MinorityPromptError(
            f"sigmas must be a 1-d tensor of at least 2 noise levels (steps + 1), got shape "
            f"{tuple(sigmas.shape)}."
        )
    if bool((sigmas[1:] > sigmas[:-1]).any()) or bool((sigmas < 0).any()):
        raise MinorityPromptError(
            "sigmas must be non-negative and non-increasing (noisiest first, usually ending "
            f"at 0), got {sigmas.tolist()}."
        )


def per_sample_noise_sampler(
    like: Tensor, generators: Sequence[torch.Generator]
) -> Callable[[Tensor, Tensor], Tensor]:
    """A k-diffusion `noise_sampler` drawing standard normal noise per sample from its generator.

    A sample's noise then depends only on its seed, not on its batch. Each call draws fresh
    noise. The SDE samplers default to a Brownian tree, whose normalized increments over
    disjoint intervals are independent too, so samplers with one draw per step (such as
    DPM-Solver++(2M) SDE) sample the same distribution either way.

    NOTE: DPM-Solver++ SDE (`sample_dpmpp_sde`) draws twice per step over nested intervals.
    A Brownian tree correlates those draws and this noise sampler does not, so pass a
    `k_diffusion.sampling.BrownianTreeNoiseSampler` as `noise_sampler` to keep that.
    """
    generators = list(generators)
    if len(generators) != like.shape[0]:
        raise MinorityPromptError(
            f"Got {len(generators)} generators for a batch of {like.shape[0]}. Give one "
            "generator per sample."
        )

    def draw(sigma: Tensor, sigma_next: Tensor) -> Tensor:
        return randn_tensor(like.shape, generator=generators, device=like.device, dtype=like.dtype)

    return draw


def resolve_sampler(sampler: str | Callable) -> Callable:
    """A k-diffusion sampler function, given itself or by name (`"dpmpp_2m"`, ...)."""
    if callable(sampler):
        return sampler
    name = sampler if sampler.startswith("sample_") else f"sample_{sampler}"
    function = getattr(k_sampling, name, None)
    if function is None:
        available = sorted(
            entry[len("sample_"):] for entry in dir(k_sampling) if entry.startswith("sample_")
        )
        raise MinorityPromptError(
            f"Unknown k-diffusion sampler {sampler!r}; available: {available}."
        )
    return function


def schedule_sigmas(pipe, num_steps: int, sigmas: str | Tensor) -> Tensor:
    """Return the sampler's noise levels, ending at 0.

    `"scheduler"` takes sigma at the timesteps that the pipeline's scheduler uses for
    `num_steps`; `"karras"` the schedule of Karras et al. (2022) between the model's
    extreme sigmas; `"k-diffusion"` k-diffusion's `get_sigmas(num_steps)`, evenly spaced
    in training time. A tensor is used as given.
    """
    if isinstance(sigmas, Tensor):
        return sigmas
    alphas_cumprod = pipe.scheduler.alphas_cumprod.float()
    table = k_external.DiscreteSchedule(((1 - alphas_cumprod) / alphas_cumprod) ** 0.5, False)
    if sigmas == "scheduler":
        scheduler = copy.deepcopy(pipe.scheduler)
        scheduler.set_timesteps(num_steps)
        timesteps = scheduler.timesteps.float()
        levels = table.t_to_sigma(timesteps)
        # Integer timesteps take the table value exactly, not a log-space interpolation.
        integral = timesteps == timesteps.round()
        levels[integral] = table.sigmas[timesteps[integral].long()]
        return k_sampling.append_zero(levels)
    if sigmas == "karras":
        return k_sampling.get_sigmas_karras(
            num_steps, float(table.sigma_min), float(table.sigma_max)
        )
    if sigmas == "k-diffusion":
        return table.get_sigmas(num_steps)
    raise MinorityPromptError(
        f"Unknown sigma schedule {sigmas!r}; use 'scheduler', 'karras', 'k-diffusion' or a "
        "tensor of noise levels."
    )


def sample_k_diffusion(
    pipe,
    sampler: str | Callable,
    prompts: str | Sequence[str],
    seeds: Sequence[int] | int = 0,
    optimizer: PromptOptimizer | None = None,
    num_inference_steps: int = 25,
    guidance_scale: float = 7.5,
    negative_prompt: str | Sequence[str] | None = None,
    height: int | None = None,
    width: int | None = None,
    sigmas: str | Tensor = "scheduler",
    quantize: bool = False,
    sampler_options: dict | None = None,
    hooks: Sequence[StepHook] = (),
    output_type: str = "pil",
    progress: bool = True,
) -> GenerationResult:
    """Sample with a k-diffusion sampler, with online prompt optimization if `optimizer` is set.

    Args:
        pipe: A diffusers `StableDiffusionPipeline` or `StableDiffusionXLPipeline`.
        sampler: A k-diffusion sampler function, or its name without `sample_`
            (`"dpmpp_2m"`, `"euler"`, `"dpmpp_2m_sde"`, ...).
        prompts, seeds, negative_prompt, height, width, output_type, progress: As in
            `generate()`.
        optimizer: The prompt optimizer; its schedule counts sampler steps.
        num_inference_steps: Sampler steps, used when `sigmas` is a schedule name.
        guidance_scale: Classifier-free guidance weight; 1 runs no unconditional pass.
        sigmas: `"scheduler"`, `"karras"`, `"k-diffusion"` or a tensor of noise levels
            (see `schedule_sigmas`).
        quantize: Round sigmas to training timesteps at each model call.
        sampler_options: Further keyword arguments of the sampler (`eta`, `s_churn`, ...).
        hooks: Further step hooks after the optimizer's; none may move the latent.

    Returns:
        A `GenerationResult`; `model_evaluations` counts UNet calls, optimization included.
    """
    sampler_function = resolve_sampler(sampler)
    levels = torch.as_tensor(schedule_sigmas(pipe, num_inference_steps, sigmas))
    check_sigmas(levels)
    session = start_session(
        pipe, optimizer, prompts, seeds, len(levels) - 1, guidance_scale, negative_prompt,
        height, width, hooks,
    )
    try:
        height, width = session.size
        shape = (
            len(session.generators),
            pipe.unet.config.in_channels,
            height // pipe.vae_scale_factor,
            width // pipe.vae_scale_factor,
        )
        with torch.no_grad():
            noise = randn_tensor(shape, generator=session.generators, device=pipe.unet.device,
                                 dtype=pipe.unet.dtype)
            model = KDiffusionDenoiser(
                session.denoiser, session.cond, session.uncond, guidance_scale, session.hook,
                quantize,
            )
            latents = model.sample(
                sampler_function, noise, levels, session.generators, progress,
                **(sampler_options or {}),
            )
            images = decode_latents(pipe, latents, output_type)
    finally:
        session.close()

    return GenerationResult(
        images=images,
        latents=latents,
        record=session.record,
        model_evaluations=session.denoiser.num_evaluations,
    )
