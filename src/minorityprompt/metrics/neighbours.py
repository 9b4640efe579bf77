"""k-nearest-neighbour radii and chunked Euclidean distances on feature arrays.

Shared by precision/recall/density/coverage and the rarity score. Distances are exact
differences (no |a|^2 + |b|^2 - 2ab shortcut), computed in float64 by default, so that duplicate
features are at distance exactly 0.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..errors import MinorityPromptError

FeatureArray = Tensor | np.ndarray

# Rows per block of the distance matrix; a block holds chunk_size x N distances.
DEFAULT_CHUNK_SIZE = 1024


def as_feature_tensor(
    features: FeatureArray,
    name: str,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> Tensor:
    """Convert a (num_samples, feature_dim) array to a tensor and check it."""
    if isinstance(features, np.ndarray):
        tensor = torch.from_numpy(np.asarray(features))
    elif isinstance(features, Tensor):
        tensor = features.detach()
    else:
        raise MinorityPromptError(
            f"{name} must be a numpy array or torch tensor, got {type(features).__name__}."
        )
    if tensor.ndim != 2:
        raise MinorityPromptError(
            f"{name} must have shape (num_samples, feature_dim), got {tuple(tensor.shape)}; "
            "flatten each sample's features to one row."
        )
    tensor = tensor.to(dtype=dtype, device=device)
    if not torch.isfinite(tensor).all():
        raise MinorityPromptError(f"{name} contains NaN or infinite values.")
    return tensor


def check_enough_samples(features: Tensor, nearest_k: int, name: str) -> None:
    """Raise unless there are at least k + 1 rows, the point itself plus k neighbours."""
    if nearest_k < 1:
        raise MinorityPromptError(f"nearest_k must be at least 1, got {nearest_k}.")
    if features.shape[0] < nearest_k + 1:
        raise MinorityPromptError(
            f"{name} has {features.shape[0]} rows, but nearest_k={nearest_k} needs at least "
            f"{nearest_k + 1} (the point itself plus {nearest_k} neighbours); pass more samples "
            "or a smaller nearest_k."
        )


def check_same_dim(first: Tensor, second: Tensor) -> None:
    if first.shape[1] != second.shape[1]:
        raise MinorityPromptError(
            f"real and fake features have different dimensions ({first.shape[1]} and "
            f"{second.shape[1]}); extract both with the same feature extractor."
        )


def pairwise_distances(first: Tensor, second: Tensor) -> Tensor:
    """Euclidean distances between the rows of two arrays, by exact differences."""
    return torch.cdist(first, second, compute_mode="donot_use_mm_for_euclid_dist")


def distance_blocks(
    rows: Tensor,
    columns: Tensor,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    progress: bool = False,
    description: str = "distance blocks",
) -> Iterator[tuple[slice, Tensor]]:
    """Yield (column slice, distances from every row to those columns) block by block."""
    if chunk_size < 1:
        raise MinorityPromptError(f"chunk_size must be at least 1, got {chunk_size}.")
    starts = range(0, columns.shape[0], chunk_size)
    for start in tqdm(starts, desc=description, disable=not progress):
        block = slice(start, min(start + chunk_size, columns.shape[0]))
        yield block, pairwise_distances(rows, columns[block])


def nearest_neighbour_radii(
    features: Tensor, nearest_k: int, chunk_size: int = DEFAULT_CHUNK_SIZE
) -> Tensor:
    """Return each row's distance to its k-th nearest neighbour, the row itself excluded.

    This is the (k + 1)-th smallest distance in the row's distance list, because the list
    starts with the row's zero distance to itself. `prdc.compute_prdc` (prdc 0.2) uses the same
    radius. An exact duplicate of the row counts as a neighbour at distance 0.
    """
    radii = torch.empty(features.shape[0], dtype=features.dtype, device=features.device)
    for block, distances in distance_blocks(features, features, chunk_size):
        # distances has shape (N, block): column j holds the distances of row block[j].
        radii[block] = torch.kthvalue(distances, nearest_k + 1, dim=0).values
    return radii
