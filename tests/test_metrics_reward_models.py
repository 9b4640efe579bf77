"""ImageReward loading errors and scoring plumbing, and the metric direction registry."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
from PIL import Image

import minorityprompt.metrics as metrics
from minorityprompt.errors import MinorityPromptError
from minorityprompt.metrics.registry import METRIC_DIRECTIONS, metric_direction
from minorityprompt.metrics.reward_models import image_reward_score, load_image_reward

IMAGE_REWARD_IMPORTABLE = importlib.util.find_spec("ImageReward") is not None


@pytest.mark.skipif(IMAGE_REWARD_IMPORTABLE, reason="the ImageReward package is installed")
def test_image_reward_missing_package_raises():
    with pytest.raises(MinorityPromptError, match="pip install image-reward"):
        load_image_reward("ImageReward-v1.0")


def test_image_reward_missing_checkpoint_raises(tmp_path):
    with pytest.raises(MinorityPromptError, match=r"ImageReward\.pt' was not found"):
        load_image_reward(tmp_path)
    with pytest.raises(MinorityPromptError, match="checkpoint .*missing.pt' was not found"):
        load_image_reward(tmp_path / "missing.pt")


class RecordingRewardModel:
    """Stands in for `ImageReward.ImageReward`: records its inputs, scores by prompt length."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Image.Image]] = []

    def score(self, prompt: str, image: Image.Image) -> float:
        self.calls.append((prompt, image))
        return float(len(prompt))


def test_image_reward_score_pairs_prompts():
    model = RecordingRewardModel()
    images = torch.randint(0, 256, (2, 3, 4, 5), dtype=torch.uint8)

    scores = image_reward_score(images, ["ab", "abcd"], model)

    assert scores.tolist() == [2.0, 4.0]
    assert [prompt for prompt, _ in model.calls] == ["ab", "abcd"]
    first_image = model.calls[0][1]
    assert first_image.size == (5, 4)
    pixels = torch.from_numpy(np.array(first_image)).permute(2, 0, 1)
    assert torch.equal(pixels, images[0])


def test_image_reward_rejects_placeholder():
    with pytest.raises(MinorityPromptError, match="contains the placeholder token"):
        image_reward_score(
            torch.zeros(1, 3, 4, 4), ["<m> dog"], RecordingRewardModel(), placeholder_token="<m>"
        )


def test_registry_covers_every_metric():
    expected = {
        "log_likelihood": "lower",
        "bits_per_dim": "higher",
        "precision": "higher",
        "recall": "higher",
        "density": "higher",
        "coverage": "higher",
        "rarity_score": "higher",
        "clip_score": "higher",
        "pick_score": "higher",
        "image_reward": "higher",
        "in_batch_similarity": "lower",
    }
    assert METRIC_DIRECTIONS == expected
    assert metrics.METRIC_DIRECTIONS is METRIC_DIRECTIONS
    assert metric_direction("in_batch_similarity") == "lower"
    with pytest.raises(MinorityPromptError, match="metric 'fid' has no registered direction"):
        metric_direction("fid")


def test_public_names_exported():
    for name in metrics.__all__:
        assert hasattr(metrics, name), name
