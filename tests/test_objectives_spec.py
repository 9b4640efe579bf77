"""Weighted sums of objectives written as text."""

from __future__ import annotations

import pytest

from minorityprompt.errors import MinorityPromptError
from minorityprompt.objectives import (
    DiversityObjective,
    MinorityObjective,
    WeightedSum,
    get_objective,
    parse_objective_spec,
)
from minorityprompt.objectives.spec import parse_terms


@pytest.mark.parametrize(
    ("text", "terms"),
    [
        ("minority", [(1.0, "minority")]),
        ("0.5*minority+1*diversity", [(0.5, "minority"), (1.0, "diversity")]),
        (" 2 * minority + diversity ", [(2.0, "minority"), (1.0, "diversity")]),
        ("1e-3*minority+-0.5*diversity", [(1e-3, "minority"), (-0.5, "diversity")]),
        ("1e+2*minority-naive", [(100.0, "minority-naive")]),
        (".25*diversity", [(0.25, "diversity")]),
    ],
)
def test_parse_terms(text, terms):
    assert parse_terms(text) == terms


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("minority+", "ends with '\\+'"),
        ("0.5*", "at character 0"),
        ("minority++diversity", "at character 9"),
        ("minority*0.5", "at character 0"),
    ],
)
def test_parse_terms_rejects(text, message):
    with pytest.raises(MinorityPromptError, match=message):
        parse_terms(text)


def test_single_name_returns_objective_itself():
    objective = parse_objective_spec("minority", options={"minority": {"lam": 0.5}})

    assert isinstance(objective, MinorityObjective)
    assert objective.lam == 0.5


def test_sum_with_per_term_options():
    objective = parse_objective_spec(
        "0.5*minority+diversity", options={"minority": {"stop_gradient": True}}
    )

    assert isinstance(objective, WeightedSum)
    (first_weight, first), (second_weight, second) = objective.terms
    assert first_weight == 0.5
    assert isinstance(first, MinorityObjective)
    assert first.stop_gradient
    assert second_weight == 1.0
    assert isinstance(second, DiversityObjective)
    assert objective.name == "0.5*minority + 1*diversity"


def test_options_for_absent_term_rejected():
    with pytest.raises(MinorityPromptError, match=r"options were given for \['diversity'\]"):
        parse_objective_spec("minority", options={"diversity": {}})


def test_unknown_name_in_sum():
    with pytest.raises(MinorityPromptError, match="Unknown objective 'colourful'"):
        parse_objective_spec("minority+colourful")


def test_get_objective_parses_sums():
    objective = get_objective("minority+diversity")

    assert isinstance(objective, WeightedSum)
    assert [weight for weight, _ in objective.terms] == [1.0, 1.0]


def test_get_objective_rejects_options_for_sums():
    with pytest.raises(MinorityPromptError, match="parse_objective_spec"):
        get_objective("minority+diversity", lam=2.0)
