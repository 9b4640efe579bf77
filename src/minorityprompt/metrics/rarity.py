"""Rarity score (Han et al., 2022, "Rarity Score: A New Metric to Evaluate the Uncommonness of
Synthesized Images").

Each real feature gets a k-NN ball whose radius is the distance to its k-th nearest real
neighbour. A fake feature's rarity score is the smallest radius among the real balls that
contain it: a sample that only sparse regions of the real data reach scores high. Higher means
rarer. A fake feature outside every real ball has no score (NaN here), as in the authors' code,
which leaves such samples out of the ranking.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch
from torch import Tensor

from .neighbours import (
    DEFAULT_CHUNK_SIZE,
    FeatureArray,
    as_feature_tensor,
    check_enough_samples,
    check_same_dim,
    distance_blocks,
    nearest_neighbour_radii,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RarityResult:
    """Per-sample rarity scores; higher is rarer.

    Attributes:
        scores: Shape (num_fake,), float64; NaN for samples outside every real ball.
        in_manifold: Shape (num_fake,), True where a real ball contains the sample.
    """

    scores: Tensor
    in_manifold: Tensor

    @property
    def mean(self) -> float:
        """Mean score over the samples inside the real manifold; NaN when there are none."""
        if not self.in_manifold.any():
            return math.nan
        return float(self.scores[self.in_manifold].mean())

    @property
    def fraction_in_manifold(self) -> float:
        return float(self.in_manifold.double().mean())


def rarity_score(
    real_features: FeatureArray,
    fake_features: FeatureArray,
    nearest_k: int = 3,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    device: torch.device | str | None = None,
    progress: bool = False,
) -> RarityResult:
    """Compute the rarity score of each fake feature against the real features.

    Higher is rarer. A real ball's radius is the distance to its k-th nearest real neighbour,
    the centre excluded, and a fake feature is inside when its distance is strictly smaller,
    the same conventions as `compute_prdc`. The default k = 3 is the authors' default.
    `progress` shows a tqdm bar over the real-to-fake distance blocks.

    Raises:
        MinorityPromptError: On shape mismatch, non-finite values or fewer than k + 1 real rows.
    """
    real = as_feature_tensor(real_features, "real_features", device=device)
    fake = as_feature_tensor(fake_features, "fake_features", device=device)
    check_same_dim(real, fake)
    check_enough_samples(real, nearest_k, "real_features")

    real_radii = nearest_neighbour_radii(real, nearest_k, chunk_size)
    scores = torch.full((fake.shape[0],), math.nan, dtype=real.dtype, device=real.device)
    for block, distances in distance_blocks(real, fake, chunk_size, progress, "rarity score"):
        # distances has shape (num_real, block size); balls that miss a sample get radius inf.
        inside = distances < real_radii[:, None]
        candidate_radii = torch.where(inside, real_radii[:, None], torch.inf)
        smallest = candidate_radii.min(dim=0).values
        scores[block] = torch.where(torch.isinf(smallest), math.nan, smallest)

    in_manifold = ~torch.isnan(scores)
    logger.debug(
        "Rarity score: %d of %d fake samples are inside the real manifold",
        int(in_manifold.sum()),
        fake.shape[0],
    )
    return RarityResult(scores=scores, in_manifold=in_manifold)
