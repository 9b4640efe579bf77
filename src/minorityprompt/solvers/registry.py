"""Solvers by name, for the API and the CLI's `--solver`."""

from __future__ import annotations

from collections.abc import Callable

from ..errors import MinorityPromptError
from .base import Solver
from .ddim import DDIMSolver

_SOLVERS: dict[str, Callable[..., Solver]] = {
    "ddim": DDIMSolver,
    "ddim-sde": lambda **options: DDIMSolver(eta=options.pop("eta", 1.0), **options),
}


def register_solver(name: str, factory: Callable[..., Solver]) -> None:
    """Make `factory(**options)` available as `get_solver(name)`."""
    _SOLVERS[name] = factory


def available_solvers() -> list[str]:
    return sorted(_SOLVERS)


def get_solver(spec: str | Solver, **options) -> Solver:
    """Resolve a solver given by name (with constructor options) or as an instance."""
    if isinstance(spec, Solver):
        return spec
    if spec not in _SOLVERS:
        raise MinorityPromptError(
            f"Unknown solver {spec!r}; available solvers are {available_solvers()}."
        )
    return _SOLVERS[spec](**options)
