"""Rarity score against a brute-force implementation and a hand-computed case."""

from __future__ import annotations

import math

import numpy as np
import pytest

from minorityprompt.errors import MinorityPromptError
from minorityprompt.metrics.rarity import rarity_score


def brute_force_rarity(real: np.ndarray, fake: np.ndarray, nearest_k: int) -> np.ndarray:
    """Loop form of the definition: the minimum radius of the real balls containing each fake."""
    real_distances = np.linalg.norm(real[:, None] - real[None], axis=-1)
    radii = np.sort(real_distances, axis=1)[:, nearest_k]
    scores = np.full(fake.shape[0], np.nan)
    for j, point in enumerate(fake):
        containing = [
            radii[i] for i in range(real.shape[0]) if np.linalg.norm(point - real[i]) < radii[i]
        ]
        if containing:
            scores[j] = min(containing)
    return scores


def test_hand_computed_1d_case():
    # Radii with k = 1: 0 -> 1, 1 -> 1, 2 -> 1, 10 -> 8 (its nearest neighbour is 2).
    real = np.array([[0.0], [1.0], [2.0], [10.0]])
    fake = np.array([[0.5], [6.0], [30.0], [3.0]])

    result = rarity_score(real, fake, nearest_k=1)

    # 0.5 is in the balls of 0 and 1 (radius 1), and 6.0 only in the ball of 10 (radius 8).
    # 3.0 is at distance exactly 1 from 2, so outside its ball, but inside the ball of 10.
    assert result.scores[0].item() == 1.0
    assert result.scores[1].item() == 8.0
    assert math.isnan(result.scores[2].item())
    assert result.scores[3].item() == 8.0
    assert result.in_manifold.tolist() == [True, True, False, True]
    assert result.mean == pytest.approx((1.0 + 8.0 + 8.0) / 3)
    assert result.fraction_in_manifold == pytest.approx(0.75)


@pytest.mark.parametrize("nearest_k", [1, 3, 5])
def test_matches_brute_force(nearest_k):
    rng = np.random.default_rng(nearest_k)
    real = rng.normal(size=(80, 5))
    fake = rng.normal(scale=1.5, size=(60, 5))

    result = rarity_score(real, fake, nearest_k=nearest_k, chunk_size=16)

    expected = brute_force_rarity(real, fake, nearest_k)
    np.testing.assert_allclose(result.scores.numpy(), expected, rtol=1e-12, equal_nan=True)
    assert np.isnan(expected).any()
    assert not np.isnan(expected).all()


def test_outliers_score_higher():
    rng = np.random.default_rng(7)
    dense = rng.normal(scale=0.1, size=(100, 2))
    sparse = rng.normal(loc=3.0, scale=1.0, size=(10, 2))
    real = np.concatenate([dense, sparse])
    fake = np.array([[0.0, 0.0], [3.0, 3.0]])

    result = rarity_score(real, fake, nearest_k=3)

    assert result.in_manifold.all()
    assert result.scores[1] > 5 * result.scores[0]


def test_no_sample_in_manifold_gives_nan_mean():
    real = np.random.default_rng(0).normal(size=(10, 2))
    fake = np.full((3, 2), 100.0)

    result = rarity_score(real, fake, nearest_k=3)

    assert not result.in_manifold.any()
    assert math.isnan(result.mean)


def test_invalid_inputs_raise():
    rng = np.random.default_rng(1)
    with pytest.raises(MinorityPromptError, match=r"real_features has 3 rows, but nearest_k=3"):
        rarity_score(rng.normal(size=(3, 2)), rng.normal(size=(5, 2)), nearest_k=3)
    with pytest.raises(MinorityPromptError, match="different dimensions"):
        rarity_score(rng.normal(size=(10, 2)), rng.normal(size=(5, 3)))
