"""Solver names and options for the CLI, and SDXL-Lightning's schedule."""

from __future__ import annotations

import logging

import pytest
import torch
from conftest import tiny
from solver_support import PROMPTS, SEEDS, SIZE

from minorityprompt import MinorityPromptError, PromptOptimizer, generate
from minorityprompt.solvers.cfgpp import CFGppDDIMSolver, CFGppDPMSolverPlusPlus2M
from minorityprompt.solvers.ddim import DDIMSolver
from minorityprompt.solvers.dpmpp import DPMSolverPlusPlus2M
from minorityprompt.solvers.lightning import LIGHTNING_4_STEP_TIMESTEPS, LightningSolver
from minorityprompt.solvers.registry import available_solvers, get_solver, solver_options

CLI_SOLVERS = {
    "ddim": (DDIMSolver, ["eta", "timestep_spacing"]),
    "ddim-sde": (DDIMSolver, ["eta", "timestep_spacing"]),
    "dpmpp-2m": (DPMSolverPlusPlus2M, []),
    "cfgpp": (CFGppDDIMSolver, ["eta", "timestep_spacing"]),
    "cfgpp-dpmpp-2m": (CFGppDPMSolverPlusPlus2M, []),
    "lightning": (LightningSolver, []),
}


@pytest.mark.parametrize("name", sorted(CLI_SOLVERS))
def test_cli_solver_names_resolve(name):
    solver_class, options = CLI_SOLVERS[name]

    assert name in available_solvers()
    assert isinstance(get_solver(name), solver_class)
    assert get_solver(name).name == name
    assert solver_options(name) == options


def test_eta_option_reaches_ddim():
    assert get_solver("ddim").eta == 0.0
    assert get_solver("ddim-sde").eta == 1.0
    assert get_solver("ddim-sde", eta=0.5).eta == 0.5
    assert get_solver("cfgpp", eta=0.3).eta == 0.3


def test_invalid_solver_options_are_rejected():
    with pytest.raises(MinorityPromptError, match=r"Invalid options \['eta'\] for solver "
                       r"'dpmpp-2m', which accepts no options"):
        get_solver("dpmpp-2m", eta=1.0)
    with pytest.raises(MinorityPromptError, match=r"Invalid options \['etta'\] for solver "
                       r"'ddim', which accepts \['eta', 'timestep_spacing'\]"):
        get_solver("ddim", etta=1.0)
    with pytest.raises(MinorityPromptError, match=r"Unknown solver 'euler'; available"):
        get_solver("euler")
    with pytest.raises(MinorityPromptError, match=r"apply only to a solver given by name"):
        get_solver(DDIMSolver(), eta=1.0)
    with pytest.raises(MinorityPromptError, match=r"eta must be non-negative, got -1"):
        get_solver("ddim-sde", eta=-1)


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_lightning_timesteps_for_four_steps(family):
    config = tiny(family).scheduler.config
    timesteps, final_alpha = get_solver("lightning").timesteps(config, 4)

    assert config.timestep_spacing == "leading"
    assert timesteps.tolist() == list(LIGHTNING_4_STEP_TIMESTEPS) == [999, 749, 499, 249]
    assert torch.equal(final_alpha, tiny(family).scheduler.alphas_cumprod[0])


def test_lightning_defaults(caplog):
    pipe = tiny("sdxl")
    solver = LightningSolver()
    result = generate(pipe, PROMPTS, seeds=SEEDS, solver=solver, num_inference_steps=4,
                      guidance_scale=solver.default_guidance_scale,
                      optimizer=PromptOptimizer(**solver.optimizer_defaults),
                      output_type="latent", progress=False, **SIZE)

    assert result.record.optimized_steps == [0, 1, 2, 3]
    # One conditional-only UNet call per step, two per Adam iteration (K = 3).
    assert result.model_evaluations == 4 + 4 * 3 * 2
    assert "distilled for guidance scale 1" not in caplog.text

    with caplog.at_level(logging.WARNING, logger="minorityprompt.solvers.lightning"):
        for _ in range(2):
            generate(pipe, PROMPTS, seeds=SEEDS, solver=solver, num_inference_steps=1,
                     guidance_scale=2.0, output_type="latent", progress=False, **SIZE)
    assert caplog.text.count("distilled for guidance scale 1, but this run samples with 2.0") == 1
