"""Precision and recall (Kynkäänniemi et al., 2019) and density and coverage (Naeem et al., 2020).

All four compare k-nearest-neighbour balls of real and fake feature vectors, and all four are
higher-is-better when the fake samples should match the real distribution. The conventions
follow `prdc.compute_prdc` (prdc 0.2): a ball's radius is the distance to the k-th neighbour
excluding the centre, and a point is inside a ball when its distance is strictly smaller than
the radius.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import torch

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
class PRDCResult:
    """Precision, recall, density and coverage; higher is better for each.

    Attributes:
        precision: Share of fake samples inside at least one real k-NN ball (fidelity).
        recall: Share of real samples inside at least one fake k-NN ball (diversity).
        density: Mean number of real balls containing a fake sample, divided by k; it can
            exceed 1.
        coverage: Share of real samples whose ball contains at least one fake sample.
    """

    precision: float
    recall: float
    density: float
    coverage: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def compute_prdc(
    real_features: FeatureArray,
    fake_features: FeatureArray,
    nearest_k: int = 5,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    device: torch.device | str | None = None,
    progress: bool = False,
) -> PRDCResult:
    """Compute precision, recall, density and coverage between two feature sets.

    Higher is better for all four. Distances are computed in float64 in blocks of
    `chunk_size` fake (or real) rows, so memory grows as chunk_size x N rather than N^2.

    Args:
        real_features: Shape (num_real, feature_dim), numpy or torch.
        fake_features: Shape (num_fake, feature_dim).
        nearest_k: k of the k-NN balls. Each set needs at least k + 1 rows.
        chunk_size: Rows per distance block.
        device: Where to compute; defaults to the input tensor's device (CPU for numpy).
        progress: Show a tqdm bar over the real-to-fake distance blocks.

    Raises:
        MinorityPromptError: On shape mismatch, non-finite values or fewer than k + 1 rows.
    """
    real = as_feature_tensor(real_features, "real_features", device=device)
    fake = as_feature_tensor(fake_features, "fake_features", device=device)
    check_same_dim(real, fake)
    check_enough_samples(real, nearest_k, "real_features")
    check_enough_samples(fake, nearest_k, "fake_features")

    real_radii = nearest_neighbour_radii(real, nearest_k, chunk_size)
    fake_radii = nearest_neighbour_radii(fake, nearest_k, chunk_size)
    if not (real_radii > 0).any():
        logger.warning(
            "Every real k-NN radius is 0 (at least k + 1 identical real features per point), "
            "so no fake sample can be inside a real ball; precision, density and coverage are 0."
        )

    real_balls_per_fake = torch.zeros(fake.shape[0], dtype=torch.long, device=real.device)
    real_in_fake_ball = torch.zeros(real.shape[0], dtype=torch.bool, device=real.device)
    nearest_fake_distance = torch.full(
        (real.shape[0],), float("inf"), dtype=real.dtype, device=real.device
    )
    for block, distances in distance_blocks(real, fake, chunk_size, progress, "PRDC"):
        # distances has shape (num_real, block size).
        inside_real_ball = distances < real_radii[:, None]
        real_balls_per_fake[block] = inside_real_ball.sum(dim=0)
        real_in_fake_ball |= (distances < fake_radii[None, block]).any(dim=1)
        nearest_fake_distance = torch.minimum(nearest_fake_distance, distances.min(dim=1).values)

    return PRDCResult(
        precision=float((real_balls_per_fake > 0).double().mean()),
        recall=float(real_in_fake_ball.double().mean()),
        density=float(real_balls_per_fake.double().mean() / nearest_k),
        coverage=float((nearest_fake_distance < real_radii).double().mean()),
    )
