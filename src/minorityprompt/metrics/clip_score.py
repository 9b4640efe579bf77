"""CLIPScore: 100 x the cosine similarity of CLIP image and prompt embeddings (higher is better).

The scale and the aggregate follow `torchmetrics.multimodal.CLIPScore` (torchmetrics 1.9): the
batch score is max(mean of 100 * cos, 0). Images reach the CLIP processor as uint8 tensors, as
torchmetrics passes them.

Two deliberate differences from torchmetrics 1.9:
- torchmetrics tokenizes without truncation and then slices the token ids to 77, which drops
  the EOS token of longer prompts, so CLIP's pooled text embedding is read from the wrong
  position. Here the tokenizer truncates and keeps EOS (see `clip_text_embeddings`). For prompts
  of at most 77 tokens the two agree.
- torchmetrics 1.9 calls `.norm` on the result of `get_image_features`, which transformers 5
  returns as a `BaseModelOutputWithPooling`, so it fails there; this module unwraps it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ..errors import MinorityPromptError
from .features import ImageFeatureExtractor, clip_text_embeddings, resolve_extractor
from .images import ImageBatch, to_uint8_images


@dataclass(frozen=True)
class ClipScoreResult:
    """CLIPScore of a batch; higher is better.

    Attributes:
        scores: Per-sample 100 * cos(image, prompt), shape (N,), not clamped, so values can be
            negative.
        mean: max(mean of `scores`, 0), the value `torchmetrics` reports for the batch.
    """

    scores: Tensor
    mean: float


def check_prompts(
    prompts: Sequence[str], num_images: int, placeholder_token: str | None = None
) -> list[str]:
    """Check that there is one real prompt per image; return them as a list.

    Scores must use the user's prompts. A prompt containing `placeholder_token` (the learnable
    token of prompt optimisation) would score the optimised prompt instead, so it is rejected.
    """
    if isinstance(prompts, str):
        raise MinorityPromptError(
            "prompts must be a sequence with one prompt per image, got a single string; wrap it "
            "in a list, repeated once per image."
        )
    prompts = list(prompts)
    if len(prompts) != num_images:
        raise MinorityPromptError(
            f"got {num_images} images but {len(prompts)} prompts; pass one prompt per image."
        )
    for index, prompt in enumerate(prompts):
        if not isinstance(prompt, str):
            raise MinorityPromptError(
                f"prompt {index} has type {type(prompt).__name__}; prompts must be strings."
            )
        if placeholder_token and placeholder_token in prompt:
            raise MinorityPromptError(
                f"prompt {index} ({prompt!r}) contains the placeholder token "
                f"{placeholder_token!r}; score images against the user's original prompt."
            )
    return prompts


def clip_score(
    images: ImageBatch,
    prompts: Sequence[str],
    clip: ImageFeatureExtractor | str | os.PathLike[str] = "openai/clip-vit-large-patch14",
    *,
    batch_size: int = 32,
    placeholder_token: str | None = None,
    progress: bool = False,
) -> ClipScoreResult:
    """Compute CLIPScore between each image and its prompt; higher is better.

    Args:
        images: (N, C, H, W) uint8 or [0, 1] float tensor, or a list of images.
        prompts: The user's prompts, one per image, without any placeholder token.
        clip: A loaded CLIP extractor (`load_clip`), or a local folder or hub id to load
            (default `openai/clip-vit-large-patch14`, the torchmetrics default).
        batch_size: Images and prompts per forward pass.
        placeholder_token: If given, prompts containing it are rejected.
        progress: Show a tqdm bar over image batches.
    """
    items = to_uint8_images(images)
    prompts = check_prompts(prompts, len(items), placeholder_token)
    extractor = resolve_extractor(clip, "clip")

    image_features = extractor.extract(items, batch_size=batch_size, progress=progress)
    text_features = clip_text_embeddings(extractor, prompts, batch_size=batch_size)
    scores = 100 * torch.nn.functional.cosine_similarity(image_features, text_features, dim=-1)
    return ClipScoreResult(scores=scores, mean=max(float(scores.mean()), 0.0))
