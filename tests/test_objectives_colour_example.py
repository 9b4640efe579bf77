"""The user-defined colour objective in examples/ registers itself and rises under optimization."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from conftest import tiny
from toy_denoiser import toy_conditioning, toy_denoiser, toy_latent, toy_state

from minorityprompt.core.conditioning import Conditioning
from minorityprompt.errors import MinorityPromptError
from minorityprompt.objectives import available_objectives, get_objective

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "colour_objective.py"


@pytest.fixture(scope="module")
def example():
    spec = importlib.util.spec_from_file_location("colour_objective_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_import_registers_colour(example):
    assert "colour" in available_objectives()
    assert isinstance(get_objective("colour"), example.ColourObjective)


def test_objective_rises_on_tiny_pipeline(example):
    result = example.run(
        tiny("sd15"),
        "a photo of a living room",
        seeds=[0, 1],
        steps=4,
        lr=0.05,
        height=32,
        width=32,
        output_type="latent",
        progress=False,
    )

    for step in result.record.steps:
        if step.conditioning != "optimized":
            continue
        first, last = step.objective[0], step.objective[-1]
        rose = [after > before for before, after in zip(first, last, strict=True)]
        assert all(rose), f"step {step.step_index}: {first} -> {last}"


def test_away_is_negated(example):
    denoiser = toy_denoiser()
    state = toy_state(denoiser, toy_latent(2, seed=0), toy_conditioning(2, seed=1))
    cond = Conditioning(state.cond.prompt_embeds)

    toward = example.ColourObjective(colour=(0.0, 0.0, 1.0))(state, cond)
    away = example.ColourObjective(colour=(0.0, 0.0, 1.0), toward=False)(state, cond)

    assert toward.shape == (2,)
    torch.testing.assert_close(away, -toward)


def test_grey_is_rejected(example):
    with pytest.raises(MinorityPromptError, match="is a grey"):
        example.ColourObjective(colour=(0.5, 0.5, 0.5))
