"""Image batch conversion to uint8 RGB tensors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from minorityprompt.errors import MinorityPromptError
from minorityprompt.metrics.images import to_uint8_images


def test_uint8_batch_passes_through():
    images = torch.randint(0, 256, (2, 3, 5, 4), dtype=torch.uint8)

    converted = to_uint8_images(images)

    assert len(converted) == 2
    assert torch.equal(converted[0], images[0])
    assert torch.equal(converted[1], images[1])


def test_float_images_round_to_uint8():
    images = torch.tensor([0.0, 0.5, 1.0, 1.0005]).reshape(1, 1, 2, 2).repeat(1, 3, 1, 1)

    (converted,) = to_uint8_images(images)

    assert converted.dtype == torch.uint8
    assert converted[0].flatten().tolist() == [0, 128, 255, 255]


def test_pil_and_grayscale_become_rgb():
    array = np.arange(24, dtype=np.uint8).reshape(2, 4, 3)
    grayscale = torch.full((1, 2, 4), 7, dtype=torch.uint8)

    from_pil, from_gray = to_uint8_images([Image.fromarray(array), grayscale])

    assert torch.equal(from_pil, torch.from_numpy(array).permute(2, 0, 1))
    assert from_gray.shape == (3, 2, 4)
    assert int(from_gray.min()) == 7


def test_single_chw_tensor_is_one_image():
    assert len(to_uint8_images(torch.zeros(3, 8, 8))) == 1


def test_invalid_images_raise():
    with pytest.raises(MinorityPromptError, match=r"outside \[0, 1\]; map images in \[-1, 1\]"):
        to_uint8_images(torch.full((1, 3, 2, 2), -1.0))
    with pytest.raises(MinorityPromptError, match=r"image 0 has shape \(4, 2, 2\)"):
        to_uint8_images(torch.zeros(1, 4, 2, 2))
    with pytest.raises(MinorityPromptError, match="image batch is empty"):
        to_uint8_images([])
    with pytest.raises(MinorityPromptError, match="dtype torch.int64"):
        to_uint8_images(torch.zeros(1, 3, 2, 2, dtype=torch.long))
    with pytest.raises(MinorityPromptError, match="shape \\(N, C, H, W\\) or \\(C, H, W\\)"):
        to_uint8_images(torch.zeros(2, 2))
