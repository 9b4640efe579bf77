"""Objectives `J` for the prompt optimizer, and their registry."""

from .base import (
    Objective,
    WeightedSum,
    available_objectives,
    get_objective,
    register_objective,
)
from .minority import MinorityObjective, annealed_s, fixed_ratio_s

__all__ = [
    "MinorityObjective",
    "Objective",
    "WeightedSum",
    "annealed_s",
    "available_objectives",
    "fixed_ratio_s",
    "get_objective",
    "register_objective",
]
