"""Sampling methods by name, for the API and the CLI's `--method`.

Each method turns a flat settings dict into the extra arguments of `generate` (an optimizer,
step hooks, a negative prompt), so every method runs through the same solvers:

    ddim          the plain solver; no settings
    minority      prompt optimization with the minority objective (PromptOptimizer settings)
    diversity     prompt optimization with the diversity objective (same settings)
    null-prompt   the negative prompt "commonly-looking" (setting: negative_prompt)
    cads          condition-annealed sampling (settings: preset and the CADS arguments)
    sgms          latent optimization by SGMS (the SGMS arguments)
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from .baselines.cads import CADS
from .baselines.null_prompt import DEFAULT_NULL_PROMPT, null_prompt_kwargs
from .baselines.sgms import SGMS
from .core.optimizer import PromptOptimizer
from .core.tokens import TokenSpec
from .errors import MinorityPromptError
from .generation import GenerationResult, generate
from .objectives.base import get_objective
from .objectives.spec import is_objective_spec, parse_objective_spec

OPTIMIZER_SETTINGS = (
    "every",
    "iterations",
    "lr",
    "schedule",
    "reuse_optimized",
    "target",
    "betas",
    "adam_eps",
)
TOKEN_SETTINGS = ("num_tokens", "position", "init")


@dataclass(frozen=True)
class MethodContext:
    """Run context that a method's builder may use besides its settings."""

    seeds: list[int]
    guidance_scale: float


MethodBuilder = Callable[[dict, MethodContext], dict]


@dataclass(frozen=True)
class Method:
    """A named sampling method.

    Attributes:
        build: `(settings, context) -> kwargs` for `generate`; raises `MinorityPromptError`
            on invalid settings.
        description: One line for `--help` and listings.
    """

    name: str
    build: MethodBuilder
    description: str


_METHODS: dict[str, Method] = {}


def register_method(name: str, build: MethodBuilder, description: str = "") -> None:
    """Make `build` available as `run_method(name, ...)`, replacing any earlier entry."""
    if not isinstance(name, str) or not name:
        raise MinorityPromptError(f"A method name must be a non-empty string, got {name!r}.")
    _METHODS[name] = Method(name, build, description)


def available_methods() -> list[str]:
    return sorted(_METHODS)


def get_method(name: str) -> Method:
    if name not in _METHODS:
        raise MinorityPromptError(
            f"Unknown method {name!r}; available methods are {available_methods()}."
        )
    return _METHODS[name]


def _reject_unknown(method: str, settings: Mapping, accepted: Sequence[str]) -> None:
    unknown = sorted(set(settings) - set(accepted))
    if unknown:
        raise MinorityPromptError(
            f"Unknown settings {unknown} for method {method!r}; accepted settings are "
            f"{sorted(accepted)}."
        )


def _parameters(cls: type, exclude: Sequence[str] = ()) -> list[str]:
    names = list(inspect.signature(cls.__init__).parameters)
    return [name for name in names if name != "self" and name not in exclude]


def optimizer_from_settings(settings: Mapping, default_objective: str) -> PromptOptimizer:
    """Build a `PromptOptimizer` from flat settings.

    Keys in `OPTIMIZER_SETTINGS` go to the optimizer and keys in `TOKEN_SETTINGS` to its
    `TokenSpec`. `objective` is a registered name or a weighted sum such as
    `"0.5*minority+diversity"`. Every other key is an option of the objective, such as
    `lam`, `s`, `guided_estimates`, `stop_gradient` or `second_term_optimized` for
    `minority`. With a weighted sum, the other keys must be objective names, each mapping
    to that objective's options.
    """
    remaining = dict(settings)
    objective = remaining.pop("objective", default_objective)
    optimizer_kwargs = {key: remaining.pop(key) for key in OPTIMIZER_SETTINGS if key in remaining}
    token_kwargs = {key: remaining.pop(key) for key in TOKEN_SETTINGS if key in remaining}
    try:
        if isinstance(objective, str) and is_objective_spec(objective):
            built = parse_objective_spec(objective, options=remaining)
        else:
            built = get_objective(objective, **remaining)
    except TypeError as error:
        raise MinorityPromptError(
            f"Invalid objective settings {sorted(remaining)} for objective {objective!r} "
            f"({error}). Optimizer settings are {list(OPTIMIZER_SETTINGS)} and token settings "
            f"are {list(TOKEN_SETTINGS)}."
        ) from error
    return PromptOptimizer(objective=built, tokens=TokenSpec(**token_kwargs), **optimizer_kwargs)


def _build_ddim(settings: dict, context: MethodContext) -> dict:
    _reject_unknown("ddim", settings, ())
    return {}


def _build_minority(settings: dict, context: MethodContext) -> dict:
    return {"optimizer": optimizer_from_settings(settings, "minority")}


def _build_diversity(settings: dict, context: MethodContext) -> dict:
    if len(context.seeds) < 2:
        raise MinorityPromptError(
            f"The diversity method needs at least 2 samples of a prompt, got {len(context.seeds)}; "
            "give several seeds."
        )
    return {"optimizer": optimizer_from_settings(settings, "diversity")}


def _build_null_prompt(settings: dict, context: MethodContext) -> dict:
    _reject_unknown("null-prompt", settings, ("negative_prompt",))
    if context.guidance_scale == 1:
        raise MinorityPromptError(
            "The null-prompt method acts through classifier-free guidance, which guidance_scale "
            "1 turns off; use a guidance scale above 1 such as 7.5."
        )
    return null_prompt_kwargs(settings.get("negative_prompt", DEFAULT_NULL_PROMPT))


def _build_cads(settings: dict, context: MethodContext) -> dict:
    accepted = ["preset", *_parameters(CADS, exclude=("seeds",))]
    _reject_unknown("cads", settings, accepted)
    options = dict(settings)
    preset = options.pop("preset", "default")
    return {"hooks": [CADS.preset(preset, seeds=context.seeds, **options)]}


def _build_sgms(settings: dict, context: MethodContext) -> dict:
    _reject_unknown("sgms", settings, _parameters(SGMS, exclude=("seeds",)))
    return {"hooks": [SGMS(seeds=context.seeds, **settings)]}


register_method("ddim", _build_ddim, "The plain solver.")
register_method("minority", _build_minority, "MinorityPrompt: optimize the minority objective.")
register_method("diversity", _build_diversity, "Prompt optimization for in-batch diversity.")
register_method("null-prompt", _build_null_prompt, f"Negative prompt {DEFAULT_NULL_PROMPT!r}.")
register_method("cads", _build_cads, "CADS: condition-annealed sampling.")
register_method("sgms", _build_sgms, "SGMS: minority guidance on the latent.")


def method_kwargs(
    name: str, settings: Mapping | None, seeds: Sequence[int], guidance_scale: float
) -> dict:
    """The extra `generate` arguments of method `name` for these settings and seeds."""
    context = MethodContext([int(seed) for seed in seeds], float(guidance_scale))
    return get_method(name).build(dict(settings or {}), context)


def run_method(
    name: str,
    pipe,
    prompts: str | Sequence[str],
    seeds: Sequence[int] | int = 0,
    settings: Mapping | None = None,
    *,
    solver="ddim",
    num_inference_steps: int = 50,
    guidance_scale: float = 7.5,
    negative_prompt: str | Sequence[str] | None = None,
    height: int | None = None,
    width: int | None = None,
    output_type: str = "pil",
    progress: bool = True,
) -> GenerationResult:
    """Sample `prompts` with the method `name` through `generate`.

    Args:
        name: One of `available_methods()`.
        settings: The method's settings (see the module docstring); `None` for defaults.
        Other arguments: as in `generate`. `negative_prompt` cannot be combined with the
            null-prompt method, which sets it.
    """
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    if isinstance(seeds, int):
        seeds = list(range(seeds, seeds + len(prompts)))
    extra = method_kwargs(name, settings, seeds, guidance_scale)
    if "negative_prompt" in extra and negative_prompt is not None:
        raise MinorityPromptError(
            f"Method {name!r} sets the negative prompt itself; leave negative_prompt unset or "
            "pass it in the method's settings."
        )
    if "negative_prompt" not in extra:
        extra["negative_prompt"] = negative_prompt
    return generate(
        pipe,
        prompts,
        seeds,
        solver=solver,
        num_inference_steps=num_inference_steps,
        guidance_scale=guidance_scale,
        height=height,
        width=width,
        output_type=output_type,
        progress=progress,
        **extra,
    )
