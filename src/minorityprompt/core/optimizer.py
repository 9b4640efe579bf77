"""The prompt optimizer: Adam on the placeholder vectors `v` against any objective."""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace

import torch
from torch import Tensor

from ..errors import MinorityPromptError
from .conditioning import Conditioning
from .prompt_encoder import PromptEncoder
from .seeding import generators_for
from .state import StepInputs, StepState
from .targets import TARGETS, OptimizationTarget, make_target
from .tokens import LearnableTokens, TokenSpec

logger = logging.getLogger(__name__)

StepSchedule = Callable[[int, int], bool]


@dataclass
class StepRecord:
    """The account of one sampling step.

    Attributes:
        step_index: Sampling step, 0 for the first.
        timestep: Training timestep of the step.
        conditioning: `"optimized"`, `"base"` (the user prompt `C`) or `"reused"` (the last
            optimized `C_v*`).
        objective: Per Adam iteration, the objective value of each sample before the update.
        grad_norm: Per Adam iteration, the L2 norm of each sample's gradient over its vectors.
        skipped_updates: Iterations whose objective or gradient was not finite; `v` kept its
            value at those.
    """

    step_index: int
    timestep: float
    conditioning: str
    objective: list[list[float]] = field(default_factory=list)
    grad_norm: list[list[float]] = field(default_factory=list)
    skipped_updates: int = 0


@dataclass
class OptimizationRecord:
    """The optimizer's account of one sampling run."""

    steps: list[StepRecord] = field(default_factory=list)
    model_evaluations: int = 0

    @property
    def optimized_steps(self) -> list[int]:
        return [step.step_index for step in self.steps if step.conditioning == "optimized"]

    def to_dict(self) -> dict:
        return {
            "optimized_steps": self.optimized_steps,
            "model_evaluations": self.model_evaluations,
            "steps": [asdict(step) for step in self.steps if step.conditioning == "optimized"],
        }

    def for_sample(self, index: int) -> dict:
        """Restrict the record to sample `index` of the batch, for per-image metadata."""
        steps = []
        for step in self.steps:
            if step.conditioning != "optimized":
                continue
            steps.append(
                {
                    "step_index": step.step_index,
                    "timestep": step.timestep,
                    "objective": [values[index] for values in step.objective],
                    "grad_norm": [values[index] for values in step.grad_norm],
                }
            )
        return {"optimized_steps": self.optimized_steps, "steps": steps}


@contextmanager
def frozen_parameters(modules: Sequence[torch.nn.Module]):
    """Set `requires_grad=False` on every parameter of `modules`, and restore each flag after.

    Autograd then keeps no activations for weight gradients and computes none.
    """
    saved: dict[int, tuple[torch.nn.Parameter, bool]] = {}
    for module in modules:
        for parameter in module.parameters():
            # A module listed twice must not record the flag that this function just set.
            if id(parameter) not in saved:
                saved[id(parameter)] = (parameter, parameter.requires_grad)
            parameter.requires_grad_(False)
    try:
        yield
    finally:
        for parameter, flag in saved.values():
            parameter.requires_grad_(flag)


class PromptOptimizer:
    """Online prompt optimization, attachable to any solver through its step hook.

    At each scheduled step, `iterations` Adam steps ascend the batch mean of the objective
    with respect to the placeholder vectors only, starting from the previous step's optimized
    vectors with a fresh Adam state. The solver then evaluates that step with `C_v*` as the
    conditional branch. Unscheduled steps use the base prompt `C`, or the last `C_v*` with
    `reuse_optimized=True`.

    With `target="text-embedding"` the same loop updates the whole embedding `C`, and with
    `target="null-text"` the unconditional branch's embeddings, which then replace that
    branch on optimized steps (see `core.targets`).

    Args:
        objective: A registered objective name or an object following `Objective`.
        every: Optimize every `every` sampling steps, at step indices 0, N, 2N, ...
        iterations: Adam iterations `K` per optimized step; 0 evaluates `C_v` without
            updating `v`.
        lr: Adam learning rate.
        schedule: Overrides `every`: a callable `(step_index, num_steps) -> bool` or a
            collection of step indices.
        reuse_optimized: Use the last `C_v*` on unscheduled steps instead of `C`.
        tokens: Placeholder count, position and initialisation.
        betas: Adam's betas.
        adam_eps: Adam's epsilon.
        objective_options: Constructor options when `objective` is a name.
        target: What Adam updates: `"token"` (the placeholder vectors, the default),
            `"text-embedding"` or `"null-text"`.
    """

    def __init__(
        self,
        objective="minority",
        every: int = 3,
        iterations: int = 3,
        lr: float = 1e-3,
        schedule: StepSchedule | Collection[int] | None = None,
        reuse_optimized: bool = False,
        tokens: TokenSpec | None = None,
        betas: tuple[float, float] = (0.9, 0.999),
        adam_eps: float = 1e-8,
        objective_options: dict | None = None,
        target: str = "token",
    ) -> None:
        from ..objectives import get_objective

        if not isinstance(every, int) or every < 1:
            raise MinorityPromptError(
                f"every (N) must be an integer of at least 1, got {every!r}; 1 optimizes at "
                "every step."
            )
        if not isinstance(iterations, int) or iterations < 0:
            raise MinorityPromptError(
                f"iterations (K) must be a non-negative integer, got {iterations!r}."
            )
        if not lr > 0:
            raise MinorityPromptError(
                f"The learning rate must be positive, got {lr!r}; 1e-3 is a good start."
            )
        if target not in TARGETS:
            raise MinorityPromptError(
                f"Unknown optimization target {target!r}; expected one of {TARGETS}."
            )
        self.objective = get_objective(objective, **(objective_options or {}))
        if target == "null-text" and getattr(self.objective, "guided_estimates", True) is False:
            raise MinorityPromptError(
                "target='null-text' changes only the unconditional branch, which an objective "
                "without guided estimates never evaluates; pass "
                "objective_options={'guided_estimates': True}."
            )
        self.target = target
        self.every = every
        self.iterations = iterations
        self.lr = float(lr)
        self.schedule = schedule
        self.reuse_optimized = reuse_optimized
        self.tokens = tokens or TokenSpec()
        self.betas = betas
        self.adam_eps = adam_eps

    def settings(self) -> dict:
        """Return the settings as plain values, for metadata."""
        init = self.tokens.init
        return {
            "objective": getattr(self.objective, "name", type(self.objective).__name__),
            "every": self.every,
            "iterations": self.iterations,
            "lr": self.lr,
            "reuse_optimized": self.reuse_optimized,
            "num_tokens": self.tokens.num_tokens,
            "position": self.tokens.position,
            "init": init if isinstance(init, str) else "tensor",
            "target": self.target,
        }

    def is_scheduled(self, step_index: int, num_steps: int) -> bool:
        if self.schedule is None:
            return step_index % self.every == 0
        if callable(self.schedule):
            return bool(self.schedule(step_index, num_steps))
        return step_index in self.schedule

    def start(
        self,
        encoder: PromptEncoder,
        prompts: Sequence[str],
        seeds: Sequence[int] | None = None,
        size: tuple[int, int] | None = None,
        frozen_modules: Sequence[torch.nn.Module] = (),
    ) -> OptimizationRun:
        """Begin a sampling run for `prompts`; returns the solvers' step hook.

        Args:
            encoder: The pipeline's prompt encoder.
            prompts: One user prompt per sample.
            seeds: One seed per sample; they seed the random initialisations and the
                objective's noise, so a sample's result does not depend on its batch.
            size: `(height, width)` for SDXL's time ids.
            frozen_modules: Models whose weights stay out of autograd while optimizing
                (the UNet and text encoders); their `requires_grad` flags are restored.
        """
        return OptimizationRun(self, encoder, prompts, seeds, size, frozen_modules)


class OptimizationRun:
    """The state of one sampling run: vectors, noise streams and the record."""

    def __init__(
        self,
        optimizer: PromptOptimizer,
        encoder: PromptEncoder,
        prompts: Sequence[str],
        seeds: Sequence[int] | None,
        size: tuple[int, int] | None,
        frozen_modules: Sequence[torch.nn.Module],
    ) -> None:
        self.optimizer = optimizer
        if seeds is not None and len(seeds) != len(prompts):
            raise MinorityPromptError(f"{len(seeds)} seeds for {len(prompts)} prompts.")
        self.noise_generators = None if seeds is None else generators_for(seeds, "objective-noise")
        init_generators = None if seeds is None else generators_for(seeds, "token-init")
        self.target: OptimizationTarget = make_target(
            optimizer.target, encoder, prompts, optimizer.tokens, init_generators, size
        )
        # The learnable placeholder vectors; `None` for the embedding targets.
        self.tokens: LearnableTokens | None = getattr(self.target, "tokens", None)
        self.frozen_modules = list(frozen_modules) or [slot.text_encoder for slot in encoder.slots]
        self.record = OptimizationRecord()
        self._last_optimized: Conditioning | None = None
        self._warned_no_gradient = False

    def before_step(self, state: StepState):
        """The solver's step hook: the target's branch becomes `branch_for_step`."""
        branch = self.branch_for_step(state)
        if self.target.branch == "uncond":
            return StepInputs(state.z_t, state.cond, branch)
        return StepInputs(state.z_t, branch, state.uncond)

    def conditioning_for_step(self, state: StepState) -> Conditioning:
        """Return the conditional branch for this step, optimizing `v` first if scheduled."""
        if self.target.branch != "cond":
            raise MinorityPromptError(
                f"The {self.target.name!r} target replaces the unconditional branch; call "
                "before_step(state), which returns both branches."
            )
        return self.branch_for_step(state)

    def branch_for_step(self, state: StepState) -> Conditioning:
        """Return the target's branch for this step, optimizing the target first if scheduled."""
        optimizer = self.optimizer
        timestep = float(torch.as_tensor(state.timestep).float().mean())
        base = state.cond
        if self.target.branch == "uncond":
            if state.uncond is None:
                raise MinorityPromptError(
                    "The null-text target optimizes the unconditional branch, but this run has "
                    "none (guidance_scale is 1); use a guidance scale above 1 or target='token'."
                )
            base = state.uncond
        if not optimizer.is_scheduled(state.step_index, state.num_steps):
            if optimizer.reuse_optimized and self._last_optimized is not None:
                self.record.steps.append(StepRecord(state.step_index, timestep, "reused"))
                return self._last_optimized
            self.record.steps.append(StepRecord(state.step_index, timestep, "base"))
            return base

        step_record = StepRecord(state.step_index, timestep, "optimized")
        self.record.steps.append(step_record)
        state = replace(state, z_t=state.z_t.detach(), noise_generators=self.noise_generators)
        evaluations_before = state.denoiser.num_evaluations
        modules = self.frozen_modules + [state.denoiser.unet]
        self.target.prepare(state)
        with torch.enable_grad(), frozen_parameters(modules):
            self._ascend(state, step_record)
        with torch.no_grad():
            optimized = self.target.encode()
        self.record.model_evaluations += state.denoiser.num_evaluations - evaluations_before
        self._last_optimized = optimized
        return optimized

    def _objective_value(self, state: StepState) -> Tensor:
        """Evaluate the objective with the target's branch in place of the base branch."""
        encoded = self.target.encode()
        if self.target.branch == "uncond":
            return self.optimizer.objective(replace(state, uncond=encoded), state.cond)
        return self.optimizer.objective(state, encoded)

    def _ascend(self, state: StepState, step_record: StepRecord) -> None:
        vectors = self.target.parameters
        optimizer = self.optimizer
        adam = torch.optim.Adam(
            vectors, lr=optimizer.lr, betas=optimizer.betas, eps=optimizer.adam_eps
        )
        for _ in range(optimizer.iterations):
            objective = self._objective_value(state)
            if objective.shape != (state.batch_size,):
                raise MinorityPromptError(
                    f"Objective {getattr(optimizer.objective, 'name', optimizer.objective)!r} "
                    f"returned shape {tuple(objective.shape)}; it must return one value per "
                    f"sample, shape ({state.batch_size},)."
                )
            # Each sample's vectors get the gradient of that sample's objective only, unless
            # the objective couples samples, as the diversity objective does.
            gradients = torch.autograd.grad(-objective.mean(), vectors, allow_unused=True)
            if all(grad is None for grad in gradients) and not self._warned_no_gradient:
                self._warned_no_gradient = True
                logger.warning(
                    "Objective %r does not depend on the %s target, so Adam leaves it unchanged.",
                    getattr(optimizer.objective, "name", optimizer.objective),
                    self.target.name,
                )
            gradients = [
                torch.zeros_like(vector) if grad is None else grad
                for vector, grad in zip(vectors, gradients, strict=True)
            ]
            per_sample_norm = torch.sqrt(
                sum(grad.float().pow(2).flatten(1).sum(dim=1) for grad in gradients)
            )
            step_record.objective.append(objective.detach().float().cpu().tolist())
            step_record.grad_norm.append(per_sample_norm.cpu().tolist())

            finite = bool(torch.isfinite(objective).all()) and all(
                bool(torch.isfinite(grad).all()) for grad in gradients
            )
            if not finite:
                step_record.skipped_updates += 1
                logger.warning(
                    "Non-finite objective or gradient at step %d; the vectors keep their value.",
                    step_record.step_index,
                )
                continue
            for vector, grad in zip(vectors, gradients, strict=True):
                vector.grad = grad.to(vector.dtype)
            adam.step()
            adam.zero_grad(set_to_none=True)
