"""Objectives `J` for the prompt optimizer, and their registry."""

from .base import (
    Objective,
    WeightedSum,
    available_objectives,
    get_objective,
    register_objective,
)
from .diversity import DiversityObjective, mean_pairwise_squared_distance
from .minority import MinorityObjective, annealed_s, fixed_ratio_s
from .spec import parse_objective_spec

__all__ = [
    "DiversityObjective",
    "MinorityObjective",
    "Objective",
    "WeightedSum",
    "annealed_s",
    "available_objectives",
    "fixed_ratio_s",
    "get_objective",
    "mean_pairwise_squared_distance",
    "parse_objective_spec",
    "register_objective",
]
