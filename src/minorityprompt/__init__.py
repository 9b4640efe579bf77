"""Minority-focused text-to-image generation by online prompt optimization.

A learnable placeholder token is appended to the prompt, and its embedding is optimized with
Adam during sampling against a likelihood-based objective, so samplers produce images that
are faithful to the prompt but have rare features.

    from minorityprompt import PromptOptimizer, generate, load_pipeline

    pipe = load_pipeline("embedded")
    result = generate(pipe, ["a red circle"] * 4, seeds=0, optimizer=PromptOptimizer(lr=1e-2))
    result.images[0].save("minority.png")
"""

__version__ = "0.1.0"

from .core.conditioning import Conditioning
from .core.denoiser import Denoiser, DenoiserOutput
from .core.optimizer import OptimizationRecord, PromptOptimizer
from .core.prompt_encoder import PromptEncoder
from .core.state import StepInputs, StepState
from .core.tokens import LearnableTokens, TokenSpec
from .errors import MinorityPromptError
from .generation import GenerationResult, generate
from .integrations.diffusers_callback import MinorityPromptCallback
from .models.loading import load_pipeline
from .objectives import MinorityObjective, WeightedSum, get_objective, register_objective
from .solvers.registry import get_solver, register_solver

__all__ = [
    "Conditioning",
    "Denoiser",
    "DenoiserOutput",
    "GenerationResult",
    "LearnableTokens",
    "MinorityObjective",
    "MinorityPromptCallback",
    "MinorityPromptError",
    "OptimizationRecord",
    "PromptEncoder",
    "PromptOptimizer",
    "StepInputs",
    "StepState",
    "TokenSpec",
    "WeightedSum",
    "generate",
    "get_objective",
    "get_solver",
    "load_pipeline",
    "register_objective",
    "register_solver",
]
