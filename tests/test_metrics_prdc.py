"""Precision/recall/density/coverage against the `prdc` package and hand-made cases."""

from __future__ import annotations

import numpy as np
import prdc
import pytest
import torch

from minorityprompt.errors import MinorityPromptError
from minorityprompt.metrics.neighbours import nearest_neighbour_radii
from minorityprompt.metrics.prdc import compute_prdc

METRIC_NAMES = ("precision", "recall", "density", "coverage")


def reference_prdc(real: np.ndarray, fake: np.ndarray, nearest_k: int) -> dict[str, float]:
    """Return prdc 0.2's result. It also prints the sample counts, which the tests ignore."""
    values = prdc.compute_prdc(real_features=real, fake_features=fake, nearest_k=nearest_k)
    return {name: float(values[name]) for name in METRIC_NAMES}


def assert_matches_reference(result, reference: dict[str, float]) -> None:
    for name in METRIC_NAMES:
        assert getattr(result, name) == pytest.approx(reference[name], abs=1e-12), name


def test_random_features_match_prdc():
    rng = np.random.default_rng(0)
    real = rng.normal(size=(200, 16))
    fake = rng.normal(loc=0.3, scale=1.2, size=(150, 16))

    result = compute_prdc(real, fake, nearest_k=5)

    assert_matches_reference(result, reference_prdc(real, fake, 5))
    assert 0 < result.precision < 1
    assert 0 < result.recall < 1


@pytest.mark.parametrize("nearest_k", [1, 3, 10])
def test_chunking_and_k_match_prdc(nearest_k):
    rng = np.random.default_rng(nearest_k)
    real = rng.normal(size=(120, 8)).astype(np.float32)
    fake = rng.normal(size=(90, 8)).astype(np.float32)

    chunked = compute_prdc(real, fake, nearest_k=nearest_k, chunk_size=7)
    whole = compute_prdc(real, fake, nearest_k=nearest_k, chunk_size=10_000)

    assert chunked == whole
    assert_matches_reference(chunked, reference_prdc(real, fake, nearest_k))


def test_duplicate_features_match_prdc():
    rng = np.random.default_rng(1)
    base = rng.normal(size=(60, 4))
    # Every real point appears twice, and a third of the fakes copy real points exactly.
    real = np.concatenate([base, base])
    fake = np.concatenate([base[:20], rng.normal(size=(40, 4))])

    result = compute_prdc(real, fake, nearest_k=5)

    assert_matches_reference(result, reference_prdc(real, fake, 5))


def test_identical_features_give_zero():
    real = np.ones((10, 3))
    fake = np.ones((8, 3))

    result = compute_prdc(real, fake, nearest_k=5)

    # All radii are 0 and membership is strict (d < r), so nothing is inside any ball.
    assert result.as_dict() == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}
    assert_matches_reference(result, reference_prdc(real, fake, 5))


def test_torch_input_matches_numpy():
    generator = torch.Generator().manual_seed(0)
    real = torch.randn(50, 6, generator=generator)
    fake = torch.randn(40, 6, generator=generator)

    from_torch = compute_prdc(real, fake, nearest_k=3)
    from_numpy = compute_prdc(real.numpy(), fake.numpy(), nearest_k=3, progress=True)

    assert from_torch == from_numpy


def test_minimum_sample_count_k_plus_one():
    rng = np.random.default_rng(2)
    real = rng.normal(size=(6, 2))
    fake = rng.normal(size=(6, 2))

    result = compute_prdc(real, fake, nearest_k=5)

    # With k + 1 rows each radius is the distance to the farthest other row.
    real_radii = np.sort(np.linalg.norm(real[:, None] - real[None], axis=-1), axis=1)[:, 5]
    distances = np.linalg.norm(real[:, None] - fake[None], axis=-1)
    expected_precision = (distances < real_radii[:, None]).any(axis=0).mean()
    assert result.precision == pytest.approx(expected_precision)
    # prdc 0.2 needs k + 2 rows here (np.argpartition with kth = k + 1).
    with pytest.raises(ValueError, match="out of bounds"):
        prdc.compute_prdc(real, fake, 5)


def test_too_few_samples_raise():
    rng = np.random.default_rng(3)
    with pytest.raises(MinorityPromptError, match=r"real_features has 5 rows, but nearest_k=5"):
        compute_prdc(rng.normal(size=(5, 2)), rng.normal(size=(20, 2)), nearest_k=5)
    with pytest.raises(MinorityPromptError, match=r"fake_features has 3 rows, but nearest_k=5"):
        compute_prdc(rng.normal(size=(20, 2)), rng.normal(size=(3, 2)), nearest_k=5)
    with pytest.raises(MinorityPromptError, match="nearest_k must be at least 1"):
        compute_prdc(rng.normal(size=(20, 2)), rng.normal(size=(20, 2)), nearest_k=0)


def test_invalid_features_raise():
    rng = np.random.default_rng(4)
    real = rng.normal(size=(20, 4))
    with pytest.raises(MinorityPromptError, match=r"different dimensions \(4 and 3\)"):
        compute_prdc(real, rng.normal(size=(20, 3)))
    with pytest.raises(MinorityPromptError, match="NaN or infinite"):
        compute_prdc(real, np.full((20, 4), np.nan))
    with pytest.raises(MinorityPromptError, match=r"shape \(num_samples, feature_dim\)"):
        compute_prdc(real, rng.normal(size=(20, 2, 2)))
    with pytest.raises(MinorityPromptError, match="numpy array or torch tensor"):
        compute_prdc(real, [[0.0] * 4] * 20)


def test_radii_exclude_self():
    points = torch.tensor([[0.0], [1.0], [3.0], [7.0]], dtype=torch.float64)

    radii = nearest_neighbour_radii(points, nearest_k=1, chunk_size=3)

    assert radii.tolist() == [1.0, 1.0, 2.0, 4.0]
