from minorityprompt.models.tokenizer import offline_clip_tokenizer


def test_offline_tokenizer_matches_clip_ids():
    tokenizer = offline_clip_tokenizer()
    ids = tokenizer("a photo of a cat").input_ids
    # Ids of openai/clip-vit-large-patch14: BOS, a, photo, of, a, cat, EOS.
    assert ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert len(tokenizer) == 49408


def test_offline_tokenizer_pad_tokens():
    assert offline_clip_tokenizer().pad_token_id == 49407
    assert offline_clip_tokenizer("!").pad_token_id == 0
