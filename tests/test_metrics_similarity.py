"""In-Batch Similarity on hand-made features and on a tiny random DINO-style ViT saved offline."""

from __future__ import annotations

import pytest
import torch

from minorityprompt.errors import MinorityPromptError
from minorityprompt.metrics.features import load_dino, load_feature_extractor
from minorityprompt.metrics.similarity import (
    in_batch_similarity,
    in_batch_similarity_of_images,
    mean_pairwise_cosine,
)


def build_tiny_vit(folder) -> None:
    """Save a random 2-layer ViT without pooler (as DINO checkpoints are) for 32 px images."""
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    config = ViTConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        image_size=32,
        patch_size=8,
    )
    torch.manual_seed(0)
    ViTModel(config, add_pooling_layer=False).eval().save_pretrained(folder)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)


@pytest.fixture(scope="module")
def vit_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-vit")
    build_tiny_vit(folder)
    return folder


def test_mean_pairwise_cosine_excludes_diagonal():
    features = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 3.0]])

    # Pair cosines: (1, 2) = 0, (1, 3) = (2, 3) = 1 / sqrt(2); the diagonal 1s are excluded.
    expected = 2 * (2 / 2**0.5) / 6
    assert mean_pairwise_cosine(features) == pytest.approx(expected)


def test_groups_weigh_equally():
    features = torch.tensor(
        [[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [-1.0, 0.0]]
    )
    groups = ["a", "a", "a", "a", "b", "b"]

    result = in_batch_similarity(features, groups)

    assert result.per_group == {"a": pytest.approx(1.0), "b": pytest.approx(-1.0)}
    assert result.mean == pytest.approx(0.0)
    assert result.group_sizes == {"a": 4, "b": 2}


def test_singleton_groups_left_out():
    features = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])

    result = in_batch_similarity(features, ["a", "a", "b"])

    assert set(result.per_group) == {"a"}
    assert result.mean == pytest.approx(0.0)
    assert result.group_sizes == {"a": 2, "b": 1}


def test_invalid_groups_raise():
    features = torch.randn(3, 4)
    with pytest.raises(MinorityPromptError, match="got 3 feature rows but 2 group keys"):
        in_batch_similarity(features, ["a", "b"])
    with pytest.raises(MinorityPromptError, match="every group has a single image"):
        in_batch_similarity(features, ["a", "b", "c"])


def test_dino_features_are_cls_token(vit_folder):
    from transformers import ViTImageProcessor, ViTModel

    extractor = load_dino(vit_folder, device="cpu")
    images = torch.randint(0, 256, (3, 3, 40, 36), dtype=torch.uint8)

    features = extractor.extract(images, batch_size=2)

    model = ViTModel.from_pretrained(vit_folder, add_pooling_layer=False).eval()
    inputs = ViTImageProcessor.from_pretrained(vit_folder)(images=list(images), return_tensors="pt")
    with torch.no_grad():
        expected = model(**inputs).last_hidden_state[:, 0]
    assert features.shape == (3, 32)
    assert torch.allclose(features, expected, atol=1e-5)


def test_in_batch_similarity_of_images(vit_folder):
    generator = torch.Generator().manual_seed(0)
    noise = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8, generator=generator)
    # Prompt "same" gets three copies of one image, prompt "mixed" two different images.
    images = torch.stack([noise[0], noise[0], noise[0], noise[0], noise[1]])
    prompts = ["same", "same", "same", "mixed", "mixed"]
    extractor = load_feature_extractor("dino", vit_folder, device="cpu")

    result = in_batch_similarity_of_images(images, prompts, extractor)

    assert result.per_group["same"] == pytest.approx(1.0, abs=1e-5)
    assert result.per_group["mixed"] < 1.0 - 1e-3
    assert result.mean == pytest.approx((1.0 + result.per_group["mixed"]) / 2, abs=1e-5)
    by_path = in_batch_similarity_of_images(images, prompts, vit_folder)
    assert by_path.mean == pytest.approx(result.mean, abs=1e-5)


def test_wrong_extractor_kind_raises(vit_folder):
    extractor = load_dino(vit_folder, device="cpu")
    images = torch.zeros(2, 3, 32, 32, dtype=torch.uint8)
    from minorityprompt.metrics.clip_score import clip_score

    with pytest.raises(MinorityPromptError, match="needs a 'clip' feature extractor, got 'dino'"):
        clip_score(images, ["a", "b"], extractor)
    with pytest.raises(MinorityPromptError, match="feature kind 'inception' is not supported"):
        load_feature_extractor("inception", vit_folder)
