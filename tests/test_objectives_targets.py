"""Optimization targets besides the token: the whole text embedding and the null-text embedding."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny

from minorityprompt.core.denoiser import Denoiser
from minorityprompt.core.optimizer import PromptOptimizer
from minorityprompt.core.prompt_encoder import PromptEncoder
from minorityprompt.core.state import StepState
from minorityprompt.core.targets import EmbeddingTarget, TokenTarget
from minorityprompt.errors import MinorityPromptError
from minorityprompt.generation import generate

PROMPTS = ["a photo of a cat", "a red bus"]
SIZE = (32, 32)


def first_step_state(pipe, guidance_scale: float = 7.5) -> StepState:
    encoder = PromptEncoder.from_pipeline(pipe)
    denoiser = Denoiser.from_pipeline(pipe)
    with torch.no_grad():
        cond = encoder.encode(PROMPTS, size=SIZE)
        uncond = encoder.encode_negative(None, len(PROMPTS), SIZE) if guidance_scale != 1 else None
    timestep = torch.tensor(801)
    z_t = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    return StepState(
        z_t=z_t,
        step_index=0,
        num_steps=5,
        timestep=timestep,
        alpha_t=denoiser.alpha(timestep, like=z_t.new_zeros(())),
        next_timestep=torch.tensor(601),
        cond=cond,
        uncond=uncond,
        guidance_scale=guidance_scale,
        denoiser=denoiser,
    )


def start_run(pipe, optimizer: PromptOptimizer):
    encoder = PromptEncoder.from_pipeline(pipe)
    return optimizer.start(encoder, PROMPTS, seeds=[0, 1], size=SIZE)


def guided_minority(target: str, **options) -> PromptOptimizer:
    return PromptOptimizer(
        lr=0.05,
        every=1,
        iterations=2,
        target=target,
        objective_options={"guided_estimates": True},
        **options,
    )


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_text_embedding_target_replaces_cond(family):
    pipe = tiny(family)
    state = first_step_state(pipe)
    run = start_run(pipe, PromptOptimizer(lr=0.05, every=1, iterations=2, target="text-embedding"))

    with torch.no_grad():
        inputs = run.before_step(state)

    assert isinstance(run.target, EmbeddingTarget)
    assert run.tokens is None
    assert inputs.uncond is state.uncond
    assert inputs.cond.prompt_embeds.shape == state.cond.prompt_embeds.shape
    assert not torch.equal(inputs.cond.prompt_embeds, state.cond.prompt_embeds)
    assert inputs.cond.prompt_embeds.dtype == state.cond.prompt_embeds.dtype
    assert all(parameter.dtype == torch.float32 for parameter in run.target.parameters)
    if family == "sdxl":
        assert len(run.target.parameters) == 2
        assert not torch.equal(inputs.cond.pooled_prompt_embeds, state.cond.pooled_prompt_embeds)
        assert torch.equal(inputs.cond.add_time_ids, state.cond.add_time_ids)
    assert run.record.steps[0].conditioning == "optimized"


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_null_text_target_replaces_uncond(family):
    pipe = tiny(family)
    state = first_step_state(pipe)
    run = start_run(pipe, guided_minority("null-text"))

    with torch.no_grad():
        inputs = run.before_step(state)

    assert run.target.branch == "uncond"
    assert inputs.cond is state.cond
    assert not torch.equal(inputs.uncond.prompt_embeds, state.uncond.prompt_embeds)
    grad_norms = run.record.steps[0].grad_norm[0]
    assert all(norm > 0 for norm in grad_norms)


def test_null_text_unscheduled_step_uses_base_uncond():
    pipe = tiny("sd15")
    state = first_step_state(pipe)
    run = start_run(pipe, guided_minority("null-text", schedule=[1]))

    with torch.no_grad():
        inputs = run.before_step(state)

    assert inputs.uncond is state.uncond
    assert inputs.cond is state.cond
    assert run.record.steps[0].conditioning == "base"


def test_token_target_is_default():
    pipe = tiny("sd15")
    run = start_run(pipe, PromptOptimizer())

    assert isinstance(run.target, TokenTarget)
    assert run.tokens is run.target.tokens
    assert PromptOptimizer().settings()["target"] == "token"


def test_null_text_needs_guided_objective():
    with pytest.raises(MinorityPromptError, match="guided_estimates"):
        PromptOptimizer(target="null-text")


def test_null_text_needs_guidance():
    pipe = tiny("sd15")
    state = first_step_state(pipe, guidance_scale=1.0)
    run = start_run(pipe, guided_minority("null-text"))

    with pytest.raises(MinorityPromptError, match="guidance_scale is 1"):
        run.before_step(state)


def test_null_text_rejects_cond_only_call():
    pipe = tiny("sd15")
    run = start_run(pipe, guided_minority("null-text"))

    with pytest.raises(MinorityPromptError, match="replaces the unconditional branch"):
        run.conditioning_for_step(first_step_state(pipe))


def test_unknown_target():
    with pytest.raises(MinorityPromptError, match="Unknown optimization target 'prompt'"):
        PromptOptimizer(target="prompt")


def test_embedding_target_before_prepare():
    target = EmbeddingTarget("cond")

    with pytest.raises(MinorityPromptError, match="before its first step"):
        _ = target.parameters


@pytest.mark.parametrize("target", ["token", "text-embedding", "null-text"])
def test_targets_run_through_generate(target):
    pipe = tiny("sd15")
    optimizer = guided_minority(target)
    common = {
        "num_inference_steps": 2,
        "height": 32,
        "width": 32,
        "output_type": "latent",
        "progress": False,
    }

    plain = generate(pipe, PROMPTS, seeds=[0, 1], **common)
    optimized = generate(pipe, PROMPTS, seeds=[0, 1], optimizer=optimizer, **common)

    assert torch.isfinite(optimized.latents).all()
    assert not torch.equal(optimized.latents, plain.latents)
    assert optimized.record.optimized_steps == [0, 1]
