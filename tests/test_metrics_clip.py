"""CLIPScore and PickScore on a tiny random CLIP model saved offline, checked against torchmetrics
and against the PickScore authors' formula."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from minorityprompt.errors import MinorityPromptError
from minorityprompt.metrics.clip_score import clip_score
from minorityprompt.metrics.features import clip_text_embeddings, load_clip, pooled_output
from minorityprompt.metrics.reward_models import load_pickscore, pick_score
from minorityprompt.testing_metrics import TINY_LOGIT_SCALE, save_tiny_clip

PROMPTS = ["a photo of a cat", "a red car on a road", "two dogs", "a bowl of soup"]
LOGIT_SCALE = TINY_LOGIT_SCALE


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-clip")
    save_tiny_clip(folder)
    return folder


@pytest.fixture(scope="module")
def clip_extractor(clip_folder):
    return load_clip(clip_folder, device="cpu")


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (4, 3, 40, 48), dtype=torch.uint8, generator=generator)


class TensorFeatures(torch.nn.Module):
    """Expose `get_*_features` as tensors, as torchmetrics 1.9 expects from transformers 4."""

    def __init__(self, clip) -> None:
        super().__init__()
        self.clip = clip
        self.config = clip.config

    def get_image_features(self, *args, **kwargs):
        return pooled_output(self.clip.get_image_features(*args, **kwargs))

    def get_text_features(self, *args, **kwargs):
        return pooled_output(self.clip.get_text_features(*args, **kwargs))


def torchmetrics_per_sample(clip_folder, images, prompts) -> tuple[list[float], float]:
    """Unclamped per-sample scores (the metric's summed state) and the batch value."""
    from torchmetrics.multimodal import CLIPScore
    from transformers import CLIPModel, CLIPProcessor

    def load():
        model = CLIPModel.from_pretrained(clip_folder).eval()
        return TensorFeatures(model), CLIPProcessor.from_pretrained(clip_folder)

    metric = CLIPScore(model_name_or_path=load)
    per_sample = []
    for image, prompt in zip(images, prompts, strict=True):
        metric.reset()
        metric.update(image, prompt)
        per_sample.append(float(metric.score))
    metric.reset()
    metric.update(list(images), list(prompts))
    return per_sample, float(metric.compute())


def test_clip_score_matches_torchmetrics(clip_folder, clip_extractor, images):
    expected_scores, expected_mean = torchmetrics_per_sample(clip_folder, images, PROMPTS)

    result = clip_score(images, PROMPTS, clip_extractor, batch_size=3)

    np.testing.assert_allclose(result.scores.numpy(), expected_scores, atol=1e-4)
    assert expected_mean > 0
    assert result.mean == pytest.approx(expected_mean, abs=1e-4)
    assert result.mean == pytest.approx(max(float(result.scores.mean()), 0.0))


def test_clip_score_loads_by_path(clip_folder, clip_extractor, images):
    by_path = clip_score(images, PROMPTS, clip_folder)
    loaded = clip_score(images, PROMPTS, clip_extractor)

    assert torch.allclose(by_path.scores, loaded.scores, atol=1e-5)


def test_clip_score_float_images_match_uint8(clip_extractor, images):
    as_float = images.float() / 255

    from_float = clip_score(as_float, PROMPTS, clip_extractor)
    from_uint8 = clip_score(images, PROMPTS, clip_extractor)

    assert torch.allclose(from_float.scores, from_uint8.scores, atol=1e-5)


def test_long_prompt_keeps_eos(clip_extractor):
    long_prompt = " ".join(["cat"] * 100)
    tokenizer = clip_extractor.processor.tokenizer
    model = clip_extractor.model

    embedding = clip_text_embeddings(clip_extractor, [long_prompt])

    truncated = tokenizer([long_prompt], truncation=True, max_length=77, return_tensors="pt")
    assert truncated["input_ids"].shape[1] == 77
    assert int(truncated["input_ids"][0, -1]) == tokenizer.eos_token_id
    with torch.no_grad():
        expected = pooled_output(model.get_text_features(**truncated))
    assert torch.allclose(embedding, expected, atol=1e-6)
    # Slicing the untruncated ids to 77, as torchmetrics 1.9 does, loses EOS and pools another
    # position, so that embedding differs.
    full = tokenizer([long_prompt], return_tensors="pt")
    sliced = {name: values[:, :77] for name, values in full.items()}
    with torch.no_grad():
        sliced_embedding = pooled_output(model.get_text_features(**sliced))
    assert not torch.allclose(embedding, sliced_embedding, atol=1e-3)


def test_clip_score_rejects_bad_prompts(clip_extractor, images):
    with pytest.raises(MinorityPromptError, match="got 4 images but 3 prompts"):
        clip_score(images, PROMPTS[:3], clip_extractor)
    with pytest.raises(MinorityPromptError, match="single string"):
        clip_score(images, "a photo of a cat", clip_extractor)
    with pytest.raises(MinorityPromptError, match=r"contains the placeholder token '<minority>'"):
        clip_score(
            images,
            ["<minority> a cat", *PROMPTS[1:]],
            clip_extractor,
            placeholder_token="<minority>",
        )


def test_missing_model_folder_raises(tmp_path, images):
    missing = tmp_path / "no-such-model"
    with pytest.raises(MinorityPromptError, match="model folder .*no-such-model.* was not found"):
        clip_score(images, PROMPTS, missing)


def test_pick_score_matches_authors_formula(clip_folder, images):
    scorer = load_pickscore(clip_folder, clip_folder, device="cpu")

    scores = pick_score(images, PROMPTS, scorer)

    # The model card's computation, with PIL images and a 77-token truncation.
    processor = scorer.processor
    model = scorer.model
    pil_images = [Image.fromarray(image.permute(1, 2, 0).numpy()) for image in images]
    image_inputs = processor(images=pil_images, return_tensors="pt")
    text_inputs = processor(
        text=PROMPTS, padding=True, truncation=True, max_length=77, return_tensors="pt"
    )
    with torch.no_grad():
        image_embeddings = pooled_output(model.get_image_features(**image_inputs))
        text_embeddings = pooled_output(model.get_text_features(**text_inputs))
    image_embeddings = image_embeddings / image_embeddings.norm(dim=-1, keepdim=True)
    text_embeddings = text_embeddings / text_embeddings.norm(dim=-1, keepdim=True)
    expected = model.logit_scale.exp() * (text_embeddings * image_embeddings).sum(-1)
    assert torch.allclose(scores, expected, atol=1e-4)
    assert float(scorer.model.logit_scale.detach().exp()) == pytest.approx(LOGIT_SCALE)


def test_pick_score_missing_hub_model_raises():
    with pytest.raises(MinorityPromptError, match="huggingface-cli download no-such-org/PickScore"):
        load_pickscore("no-such-org/PickScore", "no-such-org/PickScore", local_files_only=True)


def test_clip_image_features_shape(clip_extractor, images):
    features = clip_extractor.extract(images, batch_size=3)

    assert features.shape == (4, 16)
    assert features.dtype == torch.float32
    assert torch.isfinite(features).all()
