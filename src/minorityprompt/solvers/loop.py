"""Prompt optimization for research code that runs its own sampling loop.

`attach()` sets up the prompt optimizer for one run and yields a `SolverSession`. Inside
the loop, `session.inputs(z_t, step_index, timestep)` runs the optimizer when the step is
scheduled and returns the step's conditioning. The loop evaluates its model with it and
takes its own solver step.

`z_t` must be in the variance-preserving parameterization, the UNet's input scale (divide
Euler-type latents by `sqrt(sigma^2 + 1)` first).

Examples:
    A DDIM loop on a tiny random pipeline:

    >>> import torch
    >>> from diffusers import DDIMScheduler
    >>> from minorityprompt import Conditioning, PromptOptimizer
    >>> from minorityprompt.solvers.loop import attach
    >>> from minorityprompt.testing import tiny_sd_pipeline
    >>> pipe = tiny_sd_pipeline("sd15")
    >>> scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    >>> scheduler.set_timesteps(4)
    >>> optimizer = PromptOptimizer(lr=1e-2, every=3)
    >>> with torch.no_grad(), attach(pipe, optimizer, ["a red cube"], seeds=[0], num_steps=4,
    ...                               height=32, width=32) as session:
    ...     z = session.initial_latents()
    ...     for i, t in enumerate(scheduler.timesteps):
    ...         inputs = session.inputs(z, i, t)
    ...         branches = Conditioning.cat([inputs.uncond, inputs.cond])
    ...         output = pipe.unet(torch.cat([inputs.z, inputs.z]), t, **branches.unet_kwargs())
    ...         output_uncond, output_cond = output.sample.chunk(2)
    ...         guided = output_uncond + 7.5 * (output_cond - output_uncond)
    ...         z = scheduler.step(guided, t, inputs.z).prev_sample
    >>> session.record.optimized_steps
    [0, 3]
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import Tensor

from ..core.conditioning import Conditioning
from ..core.denoiser import Denoiser
from ..core.optimizer import OptimizationRecord, OptimizationRun, PromptOptimizer
from ..core.prompt_encoder import PromptEncoder
from ..core.state import StepInputs, StepState
from ..errors import MinorityPromptError
from .base import HookChain, StepHook

logger = logging.getLogger(__name__)


class SolverSession:
    """The prompt optimizer's side of one sampling run driven by the caller's loop.

    Attributes:
        denoiser: The pipeline's UNet as a `Denoiser`; the optimizer evaluates it, and
            `denoiser.num_evaluations` counts those calls only, not the loop's own.
        cond: Base conditioning `C` of the prompts.
        uncond: Unconditional branch; `None` when `guidance_scale` is 1.
        guidance_scale: The guidance weight that objectives see in `StepState`.
        generators: One generator per sample, seeded with the sample's seed, for the
            starting noise and any noise the loop draws, as the stock pipeline uses them.
        num_steps: Steps of the loop; the optimizer's schedule counts them.
        run: The optimizer's run, `None` without optimizer.
    """

    def __init__(
        self,
        pipe,
        denoiser: Denoiser,
        cond: Conditioning,
        uncond: Conditioning | None,
        guidance_scale: float,
        generators: list[torch.Generator],
        num_steps: int,
        size: tuple[int, int],
        run: OptimizationRun | None,
        hook: StepHook | None,
    ) -> None:
        self.pipe = pipe
        self.denoiser = denoiser
        self.cond = cond
        self.uncond = uncond
        self.guidance_scale = guidance_scale
        self.generators = generators
        self.num_steps = num_steps
        self.size = size
        self.run = run
        self.hook = hook
        self.closed = False
        self._inputs: dict[int, StepInputs] = {}
        self._last_step = -1

    @property
    def record(self) -> OptimizationRecord | None:
        return None if self.run is None else self.run.record

    def close(self) -> None:
        """End the session, so that later calls to `inputs()` raise."""
        self.closed = True
        if self.run is not None:
            logger.debug(
                "Solver session closed: optimized steps %s, %d optimizer model calls.",
                self.run.record.optimized_steps,
                self.run.record.model_evaluations,
            )

    def initial_latents(self) -> Tensor:
        """Starting noise, drawn per sample from `generators`, as `generate()` draws it.

        Call it before drawing anything else from `generators`.
        """
        from ..generation import initial_latents

        height, width = self.size
        return initial_latents(self.pipe, self.generators, height, width)

    def inputs(
        self,
        z_t: Tensor,
        step_index: int,
        timestep: Tensor | int | float,
        next_timestep: Tensor | int | float | None = None,
    ) -> StepInputs:
        """Return the step's model inputs, optimizing first if the step is scheduled.

        Args:
            z_t: The latent at this step, variance-preserving.
            step_index: 0 for the first (noisiest) step, counting up by one per step.
            timestep: The training timestep that the model gets at this step.
            next_timestep: The training timestep that the step moves to, for objectives
                that read it; `None` at the last step or if unknown.

        Returns:
            `StepInputs`: the latent to continue from (a hook may move it), and the
            conditional and unconditional branches for every model call of this step.
            Calling again with the same `step_index` returns the same inputs without
            optimizing again, so steps with several model calls are supported.

        Raises:
            MinorityPromptError: After the session closed, for a step index outside
                `[0, num_steps)`, or for a step index lower than an earlier one.
        """
        if self.closed:
            raise MinorityPromptError(
                "This SolverSession is closed. Call session.inputs() inside the `with "
                "attach(...)` block."
            )
        if not 0 <= step_index < self.num_steps:
            raise MinorityPromptError(
                f"step_index {step_index} is outside [0, {self.num_steps}). Pass the loop's "
                f"step counter, or attach with num_steps above {step_index}."
            )
        if step_index in self._inputs:
            return self._inputs[step_index]
        if step_index < self._last_step:
            raise MinorityPromptError(
                f"step_index {step_index} comes after step {self._last_step}. Visit steps in "
                "order, noisiest first."
            )

        timestep = torch.as_tensor(timestep)
        state = StepState(
            z_t=z_t,
            step_index=step_index,
            num_steps=self.num_steps,
            timestep=timestep,
            alpha_t=self.denoiser.alpha(timestep, like=z_t.new_zeros(())),
            next_timestep=None if next_timestep is None else torch.as_tensor(next_timestep),
            cond=self.cond,
            uncond=self.uncond,
            guidance_scale=self.guidance_scale,
            denoiser=self.denoiser,
        )
        if self.hook is None:
            inputs = StepInputs(z_t, self.cond, self.uncond)
        else:
            inputs = self.hook.before_step(state)
        self._inputs[step_index] = inputs
        self._last_step = step_index
        return inputs

    def conditioning(
        self, z_t: Tensor, step_index: int, timestep: Tensor | int | float
    ) -> Conditioning:
        """Return the conditional branch of `inputs(z_t, step_index, timestep)`.

        For loops that keep the unconditional branch fixed. Raises if a hook replaced the
        unconditional branch at this step (the optimizer's `"null-text"` target), because
        this method would drop that edit. Use `inputs()` there.
        """
        inputs = self.inputs(z_t, step_index, timestep)
        if inputs.uncond is not self.uncond:
            raise MinorityPromptError(
                "A step hook replaced the unconditional branch at this step. Use "
                "session.inputs(...) and evaluate both of its branches."
            )
        return inputs.cond


def start_session(
    pipe,
    optimizer: PromptOptimizer | None,
    prompts: str | Sequence[str],
    seeds: Sequence[int] | int = 0,
    num_steps: int = 50,
    guidance_scale: float = 7.5,
    negative_prompt: str | Sequence[str] | None = None,
    height: int | None = None,
    width: int | None = None,
    hooks: Sequence[StepHook] = (),
) -> SolverSession:
    """Encode the prompts, start the optimizer's run and return an open `SolverSession`.

    The arguments are those of `attach()`; close the session with `session.close()`.
    """
    from ..generation import default_size

    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    if not prompts:
        raise MinorityPromptError("No prompts were given.")
    if isinstance(seeds, int):
        seeds = list(range(seeds, seeds + len(prompts)))
    seeds = [int(seed) for seed in seeds]
    if len(seeds) != len(prompts):
        raise MinorityPromptError(
            f"Got {len(seeds)} seeds for {len(prompts)} prompts. Give one seed per prompt."
        )
    if not isinstance(num_steps, int) or num_steps < 1:
        raise MinorityPromptError(f"num_steps must be a positive integer, got {num_steps!r}.")
    default_height, default_width = default_size(pipe)
    size = (height or default_height, width or default_width)
    if isinstance(negative_prompt, str):
        negative_prompt = [negative_prompt] * len(prompts)

    encoder = PromptEncoder.from_pipeline(pipe)
    denoiser = Denoiser.from_pipeline(pipe)
    with torch.no_grad():
        cond = encoder.encode(prompts, size=size)
        uncond = None
        if guidance_scale != 1:
            uncond = encoder.encode_negative(negative_prompt, len(prompts), size)
    run = None
    if optimizer is not None:
        run = optimizer.start(
            encoder, prompts, seeds, size,
            frozen_modules=[slot.text_encoder for slot in encoder.slots] + [pipe.unet],
        )
    step_hooks = ([run] if run is not None else []) + list(hooks)
    hook = None
    if len(step_hooks) == 1:
        hook = step_hooks[0]
    elif step_hooks:
        hook = HookChain(step_hooks)

    return SolverSession(
        pipe, denoiser, cond, uncond, guidance_scale,
        [torch.Generator().manual_seed(seed) for seed in seeds], num_steps, size, run, hook,
    )


@contextmanager
def attach(
    pipe,
    optimizer: PromptOptimizer | None,
    prompts: str | Sequence[str],
    seeds: Sequence[int] | int = 0,
    num_steps: int = 50,
    guidance_scale: float = 7.5,
    negative_prompt: str | Sequence[str] | None = None,
    height: int | None = None,
    width: int | None = None,
    hooks: Sequence[StepHook] = (),
) -> Iterator[SolverSession]:
    """Attach the prompt optimizer to a sampling loop written by the caller.

    Args:
        pipe: A diffusers `StableDiffusionPipeline` or `StableDiffusionXLPipeline`; its
            modules are used and never modified.
        optimizer: The prompt optimizer; `None` yields the base conditioning at every step.
        prompts: One prompt per sample, or one string for a single sample.
        seeds: One seed per sample, or a first seed that counts up.
        num_steps: Steps of the caller's loop.
        guidance_scale: The loop's guidance weight; 1 builds no unconditional branch.
        negative_prompt: Negative prompt(s) for the unconditional branch.
        height, width: Image size in pixels; the model's default if `None`.
        hooks: Further step hooks after the optimizer's (baselines such as CADS).

    Yields:
        The `SolverSession`; it closes when the block ends, and later calls raise.
    """
    session = start_session(
        pipe, optimizer, prompts, seeds, num_steps, guidance_scale, negative_prompt, height,
        width, hooks,
    )
    try:
        yield session
    finally:
        session.close()
