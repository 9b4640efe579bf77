"""Conversion of image batches to the one form the metric models receive: uint8 RGB tensors.

With transformers 5.25, `CLIPImageProcessor` gives identical pixel values for uint8 tensors and
PIL images, but different ones for the same image as a [0, 1] float tensor. So every input is
turned into a list of (3, H, W) uint8 tensors first, which is also what `torchmetrics` passes
for uint8 images.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from ..errors import MinorityPromptError

ImageBatch = Tensor | Sequence[Tensor] | Sequence[Image.Image]

# Float images may overshoot [0, 1] by this much (e.g. after a VAE decode and clamp in fp16).
FLOAT_RANGE_SLACK = 1e-3


def to_uint8_images(images: ImageBatch) -> list[Tensor]:
    """Convert images to a list of (3, H, W) uint8 CPU tensors.

    Accepts a (N, C, H, W) or (C, H, W) tensor, a list of (C, H, W) tensors, or a list of PIL
    images. Tensors are uint8 in [0, 255] or floating point in [0, 1]; C is 3, or 1 for
    grayscale, which is repeated to RGB.
    """
    if isinstance(images, Tensor):
        if images.ndim == 3:
            images = images.unsqueeze(0)
        if images.ndim != 4:
            raise MinorityPromptError(
                f"an image tensor must have shape (N, C, H, W) or (C, H, W), got "
                f"{tuple(images.shape)}."
            )
        items: Sequence[Tensor | Image.Image] = list(images)
    else:
        items = list(images)
    if not items:
        raise MinorityPromptError("the image batch is empty; pass at least one image.")
    return [_to_uint8_image(item, index) for index, item in enumerate(items)]


def _to_uint8_image(image: Tensor | Image.Image, index: int) -> Tensor:
    if isinstance(image, Image.Image):
        array = np.asarray(image.convert("RGB"), dtype=np.uint8)
        return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()
    if not isinstance(image, Tensor):
        raise MinorityPromptError(
            f"image {index} has type {type(image).__name__}; pass torch tensors or PIL images."
        )
    if image.ndim != 3 or image.shape[0] not in (1, 3):
        raise MinorityPromptError(
            f"image {index} has shape {tuple(image.shape)}; each image must be (C, H, W) with "
            "C = 3 (RGB) or C = 1 (grayscale)."
        )
    image = image.detach().cpu()
    if image.dtype != torch.uint8:
        if not torch.is_floating_point(image):
            raise MinorityPromptError(
                f"image {index} has dtype {image.dtype}; pass uint8 in [0, 255] or float in [0, 1]."
            )
        low, high = float(image.min()), float(image.max())
        if low < -FLOAT_RANGE_SLACK or high > 1 + FLOAT_RANGE_SLACK:
            raise MinorityPromptError(
                f"float image {index} has values in [{low:.3f}, {high:.3f}], outside [0, 1]; "
                "map images in [-1, 1] with (x + 1) / 2 first."
            )
        image = (image.float() * 255).round().clamp(0, 255).to(torch.uint8)
    if image.shape[0] == 1:
        image = image.repeat(3, 1, 1)
    return image
