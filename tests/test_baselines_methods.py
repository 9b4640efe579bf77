"""The method registry, the null-prompt baseline and step hooks in `generate`."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny

from minorityprompt.baselines import CADS, SGMS, null_prompt_kwargs
from minorityprompt.core.optimizer import PromptOptimizer
from minorityprompt.core.state import StepInputs
from minorityprompt.errors import MinorityPromptError
from minorityprompt.generation import generate
from minorityprompt.methods import (
    available_methods,
    method_kwargs,
    optimizer_from_settings,
    run_method,
)
from minorityprompt.objectives import DiversityObjective, MinorityObjective, WeightedSum

PROMPTS = ["a photo of a cat", "a photo of a cat"]
COMMON = {
    "num_inference_steps": 3,
    "height": 32,
    "width": 32,
    "output_type": "latent",
    "progress": False,
}


def test_available_methods():
    assert set(available_methods()) >= {
        "ddim",
        "minority",
        "null-prompt",
        "cads",
        "sgms",
        "diversity",
    }


@pytest.mark.parametrize("name", ["minority", "null-prompt", "cads", "sgms", "diversity"])
def test_each_method_changes_ddim_samples(name):
    pipe = tiny("sd15")
    settings = {"cads": {"tau1": 0.2}, "sgms": {"every": 1}}.get(name, {})

    plain = run_method("ddim", pipe, PROMPTS, seeds=[0, 1], **COMMON)
    result = run_method(name, pipe, PROMPTS, seeds=[0, 1], settings=settings, **COMMON)

    assert torch.isfinite(result.latents).all()
    assert not torch.equal(result.latents, plain.latents)


def test_ddim_method_equals_generate():
    pipe = tiny("sd15")

    by_method = run_method("ddim", pipe, PROMPTS, seeds=[4, 5], **COMMON)
    direct = generate(pipe, PROMPTS, seeds=[4, 5], **COMMON)

    assert torch.equal(by_method.latents, direct.latents)


def test_null_prompt_equals_negative_prompt():
    pipe = tiny("sd15")

    by_method = run_method("null-prompt", pipe, PROMPTS, seeds=[0, 1], **COMMON)
    direct = generate(pipe, PROMPTS, seeds=[0, 1], negative_prompt="commonly-looking", **COMMON)

    assert null_prompt_kwargs() == {"negative_prompt": "commonly-looking"}
    assert torch.equal(by_method.latents, direct.latents)


def test_null_prompt_setting():
    kwargs = method_kwargs("null-prompt", {"negative_prompt": "ordinary"}, [0], 7.5)

    assert kwargs == {"negative_prompt": "ordinary"}


def test_null_prompt_needs_guidance():
    with pytest.raises(MinorityPromptError, match="guidance_scale 1 turns off"):
        method_kwargs("null-prompt", {}, [0], guidance_scale=1.0)


def test_null_prompt_rejects_empty():
    with pytest.raises(MinorityPromptError, match="non-empty string"):
        null_prompt_kwargs("  ")


def test_null_prompt_conflicts_with_negative_prompt():
    with pytest.raises(MinorityPromptError, match="sets the negative prompt itself"):
        run_method("null-prompt", tiny("sd15"), PROMPTS, negative_prompt="blurry", **COMMON)


def test_unknown_method():
    with pytest.raises(MinorityPromptError, match="Unknown method 'dpm'"):
        method_kwargs("dpm", {}, [0], 7.5)


@pytest.mark.parametrize(
    ("name", "settings", "message"),
    [
        ("ddim", {"lr": 0.1}, r"Unknown settings \['lr'\] for method 'ddim'"),
        ("cads", {"tau": 0.5}, r"Unknown settings \['tau'\] for method 'cads'"),
        ("sgms", {"K": 3}, r"Unknown settings \['K'\] for method 'sgms'"),
        ("null-prompt", {"prompt": "x"}, r"Unknown settings \['prompt'\]"),
        ("minority", {"lamda": 1.0}, r"Invalid objective settings \['lamda'\]"),
    ],
)
def test_unknown_settings(name, settings, message):
    with pytest.raises(MinorityPromptError, match=message):
        method_kwargs(name, settings, [0, 1], 7.5)


def test_diversity_needs_two_samples():
    with pytest.raises(MinorityPromptError, match="at least 2 samples"):
        method_kwargs("diversity", {}, [0], 7.5)


def test_cads_settings_and_preset():
    (hook,) = method_kwargs(
        "cads", {"preset": "sdxl-lightning", "noise_uncond": True}, [3, 4], 1.0
    )["hooks"]

    assert isinstance(hook, CADS)
    assert (hook.tau1, hook.tau2, hook.noise_scale) == (0.8, 1.0, 0.1)
    assert hook.noise_uncond
    assert hook.seeds == [3, 4]


def test_sgms_settings():
    (hook,) = method_kwargs("sgms", {"lr": 0.01, "s_ratio": 0.5}, [3], 7.5)["hooks"]

    assert isinstance(hook, SGMS)
    assert (hook.lr, hook.s_ratio, hook.every, hook.iterations) == (0.01, 0.5, 3, 3)
    assert hook.seeds == [3]


def test_optimizer_settings_are_routed():
    optimizer = optimizer_from_settings(
        {
            "lr": 0.002,
            "every": 1,
            "num_tokens": 2,
            "position": "start",
            "init": "vocab-gaussian",
            "target": "text-embedding",
            "lam": 0.5,
            "stop_gradient": True,
        },
        "minority",
    )

    assert optimizer.lr == 0.002
    assert optimizer.every == 1
    assert optimizer.target == "text-embedding"
    assert (optimizer.tokens.num_tokens, optimizer.tokens.position) == (2, "start")
    assert optimizer.tokens.init == "vocab-gaussian"
    assert isinstance(optimizer.objective, MinorityObjective)
    assert optimizer.objective.lam == 0.5
    assert optimizer.objective.stop_gradient


def test_optimizer_settings_with_weighted_sum():
    optimizer = optimizer_from_settings(
        {"objective": "0.5*minority+diversity", "minority": {"guided_estimates": True}},
        "minority",
    )

    assert isinstance(optimizer.objective, WeightedSum)
    (_, minority), (_, diversity) = optimizer.objective.terms
    assert minority.guided_estimates
    assert isinstance(diversity, DiversityObjective)


def test_naive_objective_by_name():
    optimizer = optimizer_from_settings({"objective": "minority-naive"}, "minority")

    assert optimizer.objective.guided_estimates
    assert optimizer.objective.stop_gradient
    assert optimizer.objective.second_term_optimized


class RecordingHook:
    """Records the conditioning it receives and passes everything through."""

    def __init__(self) -> None:
        self.seen = []

    def before_step(self, state):
        self.seen.append(state.cond.prompt_embeds.clone())
        return StepInputs(state.z_t, state.cond, state.uncond)


def test_hooks_run_after_optimizer():
    pipe = tiny("sd15")
    hook = RecordingHook()
    optimizer = PromptOptimizer(lr=0.05, every=2, iterations=1)

    result = generate(pipe, PROMPTS, seeds=[0, 1], optimizer=optimizer, hooks=[hook], **COMMON)
    plain_hook = RecordingHook()
    generate(pipe, PROMPTS, seeds=[0, 1], hooks=[plain_hook], **COMMON)

    assert result.record.optimized_steps == [0, 2]
    assert len(hook.seen) == 3
    # The hook receives C_v* at the optimized steps 0 and 2, and the base C at step 1.
    assert not torch.equal(hook.seen[0], plain_hook.seen[0])
    assert torch.equal(hook.seen[1], plain_hook.seen[1])
    assert not torch.equal(hook.seen[2], plain_hook.seen[2])


def test_passthrough_hook_reproduces_plain_run():
    pipe = tiny("sd15")

    hooked = generate(pipe, PROMPTS, seeds=[0, 1], hooks=[RecordingHook()], **COMMON)
    plain = generate(pipe, PROMPTS, seeds=[0, 1], **COMMON)

    assert torch.equal(hooked.latents, plain.latents)
