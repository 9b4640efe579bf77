"""Solvers by name, for the API and the CLI's `--solver`.

| name             | solver                                             | options (default)    |
|------------------|----------------------------------------------------|----------------------|
| `ddim`           | DDIM                                               | `eta` (0), spacing   |
| `ddim-sde`       | stochastic DDIM                                    | `eta` (1), spacing   |
| `dpmpp-2m`       | DPM-Solver++(2M)                                   | none                 |
| `cfgpp`          | CFG++ on DDIM, guidance in [0, 1]                  | `eta` (0), spacing   |
| `cfgpp-dpmpp-2m` | CFG++ on DPM-Solver++(2M), guidance in [0, 1]      | none                 |
| `lightning`      | SDXL-Lightning: DDIM on trailing timesteps, w = 1  | none                 |

"spacing" is the `timestep_spacing` option. `solver_options(name)` returns a solver's
option names, and `get_solver` rejects any other option.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

from ..errors import MinorityPromptError
from .base import Solver
from .cfgpp import CFGppDDIMSolver, CFGppDPMSolverPlusPlus2M
from .ddim import DDIMSolver
from .dpmpp import DPMSolverPlusPlus2M
from .lightning import LightningSolver


def _ddim_sde(eta: float = 1.0, timestep_spacing: str | None = None) -> DDIMSolver:
    solver = DDIMSolver(eta=eta, timestep_spacing=timestep_spacing)
    solver.name = "ddim-sde"
    return solver


_SOLVERS: dict[str, Callable[..., Solver]] = {
    "ddim": DDIMSolver,
    "ddim-sde": _ddim_sde,
    "dpmpp-2m": DPMSolverPlusPlus2M,
    "cfgpp": CFGppDDIMSolver,
    "cfgpp-dpmpp-2m": CFGppDPMSolverPlusPlus2M,
    "lightning": LightningSolver,
}


def register_solver(name: str, factory: Callable[..., Solver]) -> None:
    """Make `factory(**options)` available as `get_solver(name, **options)`."""
    _SOLVERS[name] = factory


def available_solvers() -> list[str]:
    return sorted(_SOLVERS)


def solver_options(name: str) -> list[str]:
    """Return the option names that `get_solver(name, **options)` accepts."""
    if name not in _SOLVERS:
        raise MinorityPromptError(
            f"Unknown solver {name!r}; available solvers are {available_solvers()}."
        )
    parameters = inspect.signature(_SOLVERS[name]).parameters.values()
    return [
        parameter.name
        for parameter in parameters
        if parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY)
    ]


def get_solver(spec: str | Solver, **options) -> Solver:
    """Resolve a solver given by name (with constructor options) or as an instance."""
    if isinstance(spec, Solver):
        if options:
            raise MinorityPromptError(
                f"Solver options {sorted(options)} apply only to a solver given by name. "
                f"Construct the {type(spec).__name__} with them instead."
            )
        return spec
    if spec not in _SOLVERS:
        raise MinorityPromptError(
            f"Unknown solver {spec!r}; available solvers are {available_solvers()}."
        )
    factory = _SOLVERS[spec]
    try:
        inspect.signature(factory).bind(**options)
    except TypeError:
        raise MinorityPromptError(
            f"Invalid options {sorted(options)} for solver {spec!r}, which accepts "
            f"{solver_options(spec) or 'no options'}."
        ) from None
    return factory(**options)
