"""Human-preference reward models: PickScore and ImageReward (higher is better for both).

PickScore (Kirstain et al., 2023) is a fine-tuned CLIP-H: the score is
logit_scale.exp() * cos(image embedding, prompt embedding), computed here as in the authors'
model card (`yuvalkirstain/PickScore_v1` weights with the
`laion/CLIP-ViT-H-14-laion2B-s32B-b79K` processor, prompts truncated to 77 tokens).

ImageReward (Xu et al., 2023) runs through its own package (`image-reward` on PyPI, module
`ImageReward`), whose `score` method returns the reward standardised with the mean and standard
deviation that its authors fixed.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..errors import MinorityPromptError
from .clip_score import check_prompts
from .features import (
    ImageFeatureExtractor,
    clip_text_embeddings,
    default_device,
    load_clip,
)
from .images import ImageBatch, to_uint8_images

logger = logging.getLogger(__name__)

PICKSCORE_MODEL = "yuvalkirstain/PickScore_v1"
PICKSCORE_PROCESSOR = "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"
IMAGE_REWARD_MODEL = "ImageReward-v1.0"


def load_pickscore(
    model_name_or_path: str | os.PathLike[str] = PICKSCORE_MODEL,
    processor_name_or_path: str | os.PathLike[str] = PICKSCORE_PROCESSOR,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    local_files_only: bool = False,
) -> ImageFeatureExtractor:
    """Load the PickScore CLIP model and the processor it was trained with.

    Raises:
        MinorityPromptError: If either is not found locally and cannot be downloaded; the
            message names the hub id to download.
    """
    return load_clip(
        model_name_or_path,
        processor_name_or_path=processor_name_or_path,
        device=device,
        dtype=dtype,
        local_files_only=local_files_only,
    )


def pick_score(
    images: ImageBatch,
    prompts: Sequence[str],
    scorer: ImageFeatureExtractor | str | os.PathLike[str] = PICKSCORE_MODEL,
    *,
    batch_size: int = 32,
    placeholder_token: str | None = None,
    progress: bool = False,
) -> Tensor:
    """Compute PickScore for each (image, prompt) pair; higher is better.

    Returns a (N,) float32 tensor of logit_scale.exp() * cos(image, prompt). `scorer` is a
    loaded model (`load_pickscore`) or the model's local folder or hub id, which is loaded with
    the default processor.
    """
    items = to_uint8_images(images)
    prompts = check_prompts(prompts, len(items), placeholder_token)
    if not isinstance(scorer, ImageFeatureExtractor):
        scorer = load_pickscore(scorer)
    elif scorer.kind != "clip":
        raise MinorityPromptError(f"PickScore needs a CLIP model, got a {scorer.kind!r} extractor.")

    image_features = scorer.extract(items, batch_size=batch_size, progress=progress)
    text_features = clip_text_embeddings(scorer, prompts, batch_size=batch_size)
    cosine = torch.nn.functional.cosine_similarity(image_features, text_features, dim=-1)
    logit_scale = scorer.model.logit_scale.detach().float().exp().cpu()
    return logit_scale * cosine


def load_image_reward(
    model_name_or_path: str | os.PathLike[str] = IMAGE_REWARD_MODEL,
    *,
    device: torch.device | str | None = None,
    download_root: str | os.PathLike[str] | None = None,
) -> Any:
    """Load ImageReward through the `ImageReward` package.

    `model_name_or_path` is "ImageReward-v1.0" (downloaded from the hub id `THUDM/ImageReward`
    into `download_root`), a local `ImageReward.pt` file, or a folder containing
    `ImageReward.pt` and `med_config.json`.

    Raises:
        MinorityPromptError: If the package is missing or cannot be imported, or the checkpoint
            is not found. The message names what to install or download.
    """
    # NOTE: image-reward 1.5 imports helpers that transformers 5 removed
    # (`apply_chunking_to_forward`), so it imports only beside transformers 4; this loader's
    # success path has not been run against transformers 5.
    name, med_config = _image_reward_files(model_name_or_path)
    module = _import_image_reward()
    device = torch.device(device) if device is not None else default_device()
    root = os.fspath(download_root) if download_root is not None else None
    try:
        model = module.load(name, device=device, download_root=root, med_config=med_config)
    except (OSError, RuntimeError) as error:
        raise MinorityPromptError(
            f"could not load ImageReward from {name!r}: {error}. Download `ImageReward.pt` and "
            "`med_config.json` from the hub repository THUDM/ImageReward and pass their folder."
        ) from error
    logger.info("Loaded ImageReward %s on %s", name, device)
    return model


def _import_image_reward() -> Any:
    try:
        return importlib.import_module("ImageReward")
    except ImportError as error:
        raise MinorityPromptError(
            f"ImageReward is unavailable ({error}). Install it with `pip install image-reward` "
            "in an environment with transformers 4.x, because image-reward 1.5 does not import "
            "under transformers 5."
        ) from error


def _image_reward_files(model_name_or_path: str | os.PathLike[str]) -> tuple[str, str | None]:
    """Return (checkpoint name or file, med_config path or None) for `ImageReward.load`."""
    source = os.fspath(model_name_or_path)
    if source == IMAGE_REWARD_MODEL:
        return source, None
    path = Path(source).expanduser()
    folder = path if path.is_dir() else path.parent
    checkpoint = path / "ImageReward.pt" if path.is_dir() else path
    if not checkpoint.is_file():
        raise MinorityPromptError(
            f"ImageReward checkpoint {str(checkpoint)!r} was not found; pass "
            f"{IMAGE_REWARD_MODEL!r} to download it, or a folder with ImageReward.pt and "
            "med_config.json from THUDM/ImageReward."
        )
    med_config = folder / "med_config.json"
    return str(checkpoint), str(med_config) if med_config.is_file() else None


def image_reward_score(
    images: ImageBatch,
    prompts: Sequence[str],
    model: Any,
    *,
    placeholder_token: str | None = None,
    progress: bool = False,
) -> Tensor:
    """Compute the ImageReward score of each (image, prompt) pair; higher is better.

    `model` is the result of `load_image_reward`. Each pair goes through the package's
    `model.score(prompt, image)`, which returns the standardised reward.
    """
    from PIL import Image

    items = to_uint8_images(images)
    prompts = check_prompts(prompts, len(items), placeholder_token)
    scores = []
    pairs = zip(items, prompts, strict=True)
    for image, prompt in tqdm(pairs, total=len(items), desc="ImageReward", disable=not progress):
        pil_image = Image.fromarray(image.permute(1, 2, 0).numpy())
        with torch.no_grad():
            scores.append(float(model.score(prompt, pil_image)))
    return torch.tensor(scores, dtype=torch.float32)
