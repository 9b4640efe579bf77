import logging

import pytest
import torch

from minorityprompt import MinorityPromptError, PromptEncoder, TokenSpec
from minorityprompt.core.tokens import LearnableTokens

PROMPTS = ["a photo of a cat", "an astronaut riding a horse on the moon"]


def encode_with_pipeline(pipe, prompts):
    if hasattr(pipe, "text_encoder_2"):
        embeds, _, pooled, _ = pipe.encode_prompt(
            prompts, device="cpu", do_classifier_free_guidance=False
        )
        return embeds, pooled
    embeds, _ = pipe.encode_prompt(prompts, "cpu", 1, False)
    return embeds, None


def test_base_encoding_equals_pipeline(pipe):
    encoder = PromptEncoder.from_pipeline(pipe)
    with torch.no_grad():
        ours = encoder.encode(PROMPTS)
        embeds, pooled = encode_with_pipeline(pipe, PROMPTS)
    assert torch.equal(ours.prompt_embeds, embeds)
    if pooled is not None:
        assert torch.equal(ours.pooled_prompt_embeds, pooled)


def test_layout_matches_tokenizer_without_placeholder(pipe):
    encoder = PromptEncoder.from_pipeline(pipe)
    for slot in encoder.slots:
        layout = encoder.layout(slot, PROMPTS)
        expected = slot.tokenizer(
            PROMPTS,
            padding="max_length",
            max_length=slot.max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids
        assert torch.equal(layout.input_ids, expected)


@pytest.mark.parametrize("position", ["end", "start"])
def test_placeholder_positions(position):
    from conftest import tiny

    encoder = PromptEncoder.from_pipeline(tiny("sd15"))
    slot = encoder.slots[0]
    layout = encoder.layout(slot, ["a cat"], num_tokens=2, position=position)
    content_length = 2  # "a", "cat"
    expected = [1 + content_length, 2 + content_length] if position == "end" else [1, 2]
    assert layout.placeholder_positions.tolist() == [expected]
    assert layout.input_ids[0, 0] == slot.tokenizer.bos_token_id


def test_placeholder_survives_truncation(caplog):
    from conftest import tiny

    encoder = PromptEncoder.from_pipeline(tiny("sd15"))
    slot = encoder.slots[0]
    long_prompt = " ".join(["cat"] * 100)
    with caplog.at_level(logging.WARNING):
        layout = encoder.layout(slot, [long_prompt, long_prompt], num_tokens=1)
        encoder.layout(slot, [long_prompt], num_tokens=1)
    ids = layout.input_ids[0]
    assert ids.shape[0] == 77
    assert layout.placeholder_positions.tolist() == [[75], [75]]
    assert ids[76] == slot.tokenizer.eos_token_id
    truncation_warnings = [r for r in caplog.records if "truncated" in r.getMessage()]
    assert len(truncation_warnings) == 1


def test_vectors_change_only_placeholder_encoding(pipe):
    encoder = PromptEncoder.from_pipeline(pipe)
    tokens = LearnableTokens(encoder, PROMPTS, TokenSpec(init="cool"))
    with torch.no_grad():
        before = tokens.encode().prompt_embeds.clone()
        for vector in tokens.vectors:
            vector.add_(1.0)
        after = tokens.encode().prompt_embeds
    position = tokens.layouts[0].placeholder_positions[0, 0]
    # CLIP attends causally: positions before the placeholder are unchanged.
    assert torch.equal(before[0, :position], after[0, :position])
    assert not torch.allclose(before[0, position:], after[0, position:])


def test_init_word_equals_its_embedding(pipe):
    encoder = PromptEncoder.from_pipeline(pipe)
    tokens = LearnableTokens(encoder, PROMPTS, TokenSpec(init="cool", num_tokens=2))
    for slot, vectors in zip(encoder.slots, tokens.vectors, strict=True):
        table = slot.text_encoder.get_input_embeddings().weight
        word_id = slot.tokenizer("cool", add_special_tokens=False).input_ids[0]
        assert vectors.dtype == torch.float32
        assert vectors.shape == (2, 2, table.shape[1])
        assert torch.equal(vectors[1, 1], table[word_id].float())


@pytest.mark.parametrize("init", ["encoder-default", "vocab-gaussian"])
def test_random_inits_are_seeded_per_sample(init):
    from conftest import tiny

    from minorityprompt.core.seeding import generators_for

    encoder = PromptEncoder.from_pipeline(tiny("sdxl"))
    spec = TokenSpec(init=init)
    pair = LearnableTokens(encoder, PROMPTS, spec, generators_for([5, 6], "init"))
    single = LearnableTokens(encoder, PROMPTS[1:], spec, generators_for([6], "init"))
    for both, alone in zip(pair.vectors, single.vectors, strict=True):
        assert torch.equal(both[1], alone[0])
        assert not torch.equal(both[0], both[1])


def test_tensor_init():
    from conftest import tiny

    encoder = PromptEncoder.from_pipeline(tiny("sd15"))
    start = torch.arange(32, dtype=torch.float32)
    tokens = LearnableTokens(encoder, PROMPTS, TokenSpec(init=start))
    assert torch.equal(tokens.vectors[0][1, 0], start)
    with pytest.raises(MinorityPromptError, match="last dimension 5"):
        LearnableTokens(encoder, PROMPTS, TokenSpec(init=torch.zeros(5)))


def test_multi_token_init_word_is_rejected():
    from conftest import tiny

    encoder = PromptEncoder.from_pipeline(tiny("sd15"))
    with pytest.raises(MinorityPromptError, match="init word 'photosynthesizing' is .* tokens"):
        LearnableTokens(encoder, PROMPTS, TokenSpec(init="photosynthesizing"))


def test_token_spec_validation():
    with pytest.raises(MinorityPromptError, match="num_tokens must be a positive integer"):
        TokenSpec(num_tokens=0)
    with pytest.raises(MinorityPromptError, match="Unknown placeholder position 'middle'"):
        TokenSpec(position="middle")
