"""In-Batch Similarity: mean pairwise cosine similarity of images generated from one prompt.

Lower is better: it measures how alike the samples of one prompt are, so a diverse sampler
scores low. Features are DINO CLS embeddings by default (`facebook/dino-vits16`).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ..errors import MinorityPromptError
from .features import ImageFeatureExtractor, resolve_extractor
from .images import ImageBatch, to_uint8_images
from .neighbours import FeatureArray, as_feature_tensor

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class InBatchSimilarityResult:
    """In-Batch Similarity; lower is better (more diverse).

    Attributes:
        mean: Mean over groups of each group's mean off-diagonal cosine similarity, so every
            prompt weighs the same whatever its number of images.
        per_group: Each group's mean pairwise cosine similarity, for groups of 2 or more.
        group_sizes: The number of images of every group, including singletons.
    """

    mean: float
    per_group: dict[Hashable, float]
    group_sizes: dict[Hashable, int]


def mean_pairwise_cosine(features: Tensor) -> float:
    """Mean cosine similarity over ordered pairs of distinct rows (the diagonal excluded)."""
    count = features.shape[0]
    if count < 2:
        raise MinorityPromptError(f"pairwise similarity needs at least 2 rows, got {count}.")
    normalized = torch.nn.functional.normalize(features, dim=1)
    gram = normalized @ normalized.T
    return float((gram.sum() - gram.diagonal().sum()) / (count * (count - 1)))


def in_batch_similarity(
    features: FeatureArray, groups: Sequence[Hashable]
) -> InBatchSimilarityResult:
    """Compute In-Batch Similarity of features grouped by prompt; lower is better.

    Args:
        features: Shape (N, feature_dim), one row per image.
        groups: One key per row, usually the prompt; rows with equal keys form a group.

    Groups with a single image have no pairs and are left out of the mean.

    Raises:
        MinorityPromptError: If the lengths differ or no group has two or more images.
    """
    tensor = as_feature_tensor(features, "features")
    groups = list(groups)
    if len(groups) != tensor.shape[0]:
        raise MinorityPromptError(
            f"got {tensor.shape[0]} feature rows but {len(groups)} group keys; pass one key "
            "(for example the prompt) per row."
        )
    rows_by_group: dict[Hashable, list[int]] = {}
    for index, key in enumerate(groups):
        rows_by_group.setdefault(key, []).append(index)

    group_sizes = {key: len(rows) for key, rows in rows_by_group.items()}
    per_group = {
        key: mean_pairwise_cosine(tensor[rows])
        for key, rows in rows_by_group.items()
        if len(rows) >= 2
    }
    if not per_group:
        raise MinorityPromptError(
            "every group has a single image, so there are no pairs to compare; generate at "
            "least 2 images per prompt."
        )
    singletons = len(group_sizes) - len(per_group)
    if singletons:
        logger.warning(
            "%d groups with a single image are left out of In-Batch Similarity", singletons
        )
    mean = math.fsum(per_group.values()) / len(per_group)
    return InBatchSimilarityResult(mean=mean, per_group=per_group, group_sizes=group_sizes)


def in_batch_similarity_of_images(
    images: ImageBatch,
    prompts: Sequence[str],
    extractor: ImageFeatureExtractor | str | os.PathLike[str] = "facebook/dino-vits16",
    *,
    batch_size: int = 32,
    progress: bool = False,
) -> InBatchSimilarityResult:
    """Embed images with DINO and compute In-Batch Similarity per prompt; lower is better.

    `extractor` is a loaded DINO extractor (`load_dino`) or its local folder or hub id.
    """
    items = to_uint8_images(images)
    if isinstance(prompts, str) or len(prompts) != len(items):
        raise MinorityPromptError(
            f"got {len(items)} images but prompts of length {len(prompts)}; pass one prompt "
            "per image."
        )
    extractor = resolve_extractor(extractor, "dino")
    features = extractor.extract(items, batch_size=batch_size, progress=progress)
    return in_batch_similarity(features, prompts)
