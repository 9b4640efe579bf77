"""The objective interface, the registry of objectives by name, and weighted sums."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

from torch import Tensor

from ..core.conditioning import Conditioning
from ..core.state import StepState
from ..errors import MinorityPromptError


@runtime_checkable
class Objective(Protocol):
    """A function `J(z_t, C_v)` that the prompt optimizer maximizes with respect to `v`.

    Implementations return one value per sample, shape `(batch,)`, differentiable with respect
    to the tensors in `cond_v`. The optimizer ascends the batch mean. `state` carries the
    latent, the timestep, the base conditioning `C`, the denoiser and per-sample noise
    generators; an objective should draw its noise through `state.randn_like_latent()`.
    """

    name: str

    def __call__(self, state: StepState, cond_v: Conditioning) -> Tensor: ...


ObjectiveFactory = Callable[..., Objective]
_REGISTRY: dict[str, ObjectiveFactory] = {}


def register_objective(name: str, factory: ObjectiveFactory | Objective | None = None):
    """Register an objective under `name`, for `get_objective` and the CLI's `--objective`.

    `factory` may be a class, a function returning an objective, or an objective instance.
    Without `factory`, returns a decorator:

        @register_objective("brightness")
        class Brightness:
            name = "brightness"
            def __call__(self, state, cond_v):
                x0 = state.denoiser.predict(state.z_t, state.timestep, cond_v).x0
                return x0.mean(dim=(1, 2, 3))

    Registering a name again replaces the earlier entry.
    """
    if not isinstance(name, str) or not name:
        raise MinorityPromptError(f"An objective name must be a non-empty string, got {name!r}.")

    def add(entry):
        if inspect.isclass(entry) or not isinstance(entry, Objective):
            _REGISTRY[name] = entry
        else:
            # An instance: every lookup returns that same object.
            _REGISTRY[name] = lambda: entry
        return entry

    if factory is None:
        return add
    return add(factory)


def available_objectives() -> list[str]:
    return sorted(_REGISTRY)


def get_objective(spec: str | Objective, **kwargs) -> Objective:
    """Resolve an objective given by registered name (with constructor `kwargs`) or object.

    A string that is not a registered name but contains `+` or `*` is parsed as a weighted
    sum by `parse_objective_spec`, for example `"0.5*minority+diversity"`. Per-term options
    go through that function.
    """
    if isinstance(spec, str):
        if spec not in _REGISTRY and ("+" in spec or "*" in spec):
            from .spec import parse_objective_spec

            if kwargs:
                raise MinorityPromptError(
                    f"Options {sorted(kwargs)} cannot apply to the weighted sum {spec!r}; use "
                    "parse_objective_spec(spec, options={name: {...}}) to set them per term."
                )
            return parse_objective_spec(spec)
        if spec not in _REGISTRY:
            raise MinorityPromptError(
                f"Unknown objective {spec!r}; registered objectives are "
                f"{available_objectives()}. Register yours with register_objective()."
            )
        objective = _REGISTRY[spec](**kwargs)
    else:
        if kwargs:
            raise MinorityPromptError("Objective options apply only to an objective given by name.")
        objective = spec
    if not callable(objective):
        raise MinorityPromptError(f"Objective {spec!r} is not callable.")
    return objective


class WeightedSum:
    """`J = sum_k weight_k * J_k` over objectives that share the optimized conditioning.

    Args:
        terms: Pairs `(weight, objective)`; objectives may be names or objects.
    """

    def __init__(self, terms: Sequence[tuple[float, str | Objective]]) -> None:
        if not terms:
            raise MinorityPromptError("WeightedSum needs at least one (weight, objective) term.")
        self.terms = [(float(weight), get_objective(objective)) for weight, objective in terms]
        self.name = " + ".join(f"{weight:g}*{obj.name}" for weight, obj in self.terms)

    def __call__(self, state: StepState, cond_v: Conditioning) -> Tensor:
        total = None
        for weight, objective in self.terms:
            value = weight * objective(state, cond_v)
            total = value if total is None else total + value
        return total
