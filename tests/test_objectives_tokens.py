"""Token options (position, count, initialisation) each run an optimized step on SD 1.5 and SDXL."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny

from minorityprompt.core.denoiser import Denoiser
from minorityprompt.core.optimizer import PromptOptimizer
from minorityprompt.core.prompt_encoder import PromptEncoder
from minorityprompt.core.state import StepState
from minorityprompt.core.tokens import TokenSpec
from minorityprompt.errors import MinorityPromptError

PROMPTS = ["a photo of a cat", "a red bus"]
SIZE = (32, 32)
FAMILIES = ["sd15", "sdxl"]


def first_step_state(pipe, encoder: PromptEncoder) -> StepState:
    denoiser = Denoiser.from_pipeline(pipe)
    with torch.no_grad():
        cond = encoder.encode(PROMPTS, size=SIZE)
        uncond = encoder.encode_negative(None, len(PROMPTS), SIZE)
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
        guidance_scale=7.5,
        denoiser=denoiser,
    )


def optimized_step(family: str, spec: TokenSpec):
    """Run one optimized step; return the run, its inputs, the state and the initial vectors."""
    pipe = tiny(family)
    encoder = PromptEncoder.from_pipeline(pipe)
    optimizer = PromptOptimizer(lr=0.05, every=1, iterations=1, tokens=spec)
    run = optimizer.start(encoder, PROMPTS, seeds=[0, 1], size=SIZE)
    initial = run.tokens.snapshot()
    state = first_step_state(pipe, encoder)
    with torch.no_grad():
        inputs = run.before_step(state)
    return run, inputs, state, initial


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("position", ["end", "start"])
@pytest.mark.parametrize("num_tokens", [1, 2, 4])
def test_position_and_count(family, position, num_tokens):
    run, inputs, state, initial = optimized_step(
        family, TokenSpec(num_tokens=num_tokens, position=position)
    )

    for slot, layout, vectors, start in zip(
        run.tokens.encoder.slots, run.tokens.layouts, run.tokens.vectors, initial, strict=True
    ):
        assert vectors.shape == (2, num_tokens, slot.embedding_dim)
        assert not torch.equal(vectors, start)
        positions = layout.placeholder_positions
        if position == "start":
            assert positions.tolist() == [list(range(1, 1 + num_tokens))] * 2
        else:
            # Right after each prompt's own tokens, before the end-of-text token.
            eos = slot.tokenizer.eos_token_id
            for row, ids in zip(positions.tolist(), layout.input_ids.tolist(), strict=True):
                assert ids[row[-1] + 1] == eos
    assert not torch.equal(inputs.cond.prompt_embeds, state.cond.prompt_embeds)
    assert inputs.uncond is state.uncond


@pytest.mark.parametrize("family", FAMILIES)
def test_init_word(family):
    run, inputs, state, initial = optimized_step(family, TokenSpec(init="cool"))

    for slot, start in zip(run.tokens.encoder.slots, initial, strict=True):
        table = slot.text_encoder.get_input_embeddings().weight
        cool = slot.tokenizer("cool", add_special_tokens=False).input_ids[0]
        assert torch.equal(start[0, 0], table[cool].float())
        assert torch.equal(start[1, 0], table[cool].float())


@pytest.mark.parametrize("family", FAMILIES)
def test_encoder_default_init(family):
    run, inputs, state, initial = optimized_step(family, TokenSpec(init="encoder-default"))

    for start, vectors in zip(initial, run.tokens.vectors, strict=True):
        # CLIP draws new rows from N(0, 0.02^2); 32 dimensions give a loose estimate.
        assert 0.01 < start.std().item() < 0.04
        assert not torch.equal(start[0], start[1])
        assert not torch.equal(vectors, start)


@pytest.mark.parametrize("family", FAMILIES)
def test_vocab_gaussian_init(family):
    run, inputs, state, initial = optimized_step(family, TokenSpec(init="vocab-gaussian"))

    slots = run.tokens.encoder.slots
    for slot, start, vectors in zip(slots, initial, run.tokens.vectors, strict=True):
        table = slot.text_encoder.get_input_embeddings().weight.float()
        assert start.std().item() == pytest.approx(table.std().item(), rel=0.5)
        assert not torch.equal(start[0], start[1])
        assert not torch.equal(vectors, start)


@pytest.mark.parametrize("family", FAMILIES)
def test_multi_token_init_word_rejected(family):
    pipe = tiny(family)
    encoder = PromptEncoder.from_pipeline(pipe)
    optimizer = PromptOptimizer(tokens=TokenSpec(init="minorityprompt"))

    with pytest.raises(MinorityPromptError, match=r"init word 'minorityprompt' is \d+ tokens"):
        optimizer.start(encoder, PROMPTS, seeds=[0, 1], size=SIZE)
