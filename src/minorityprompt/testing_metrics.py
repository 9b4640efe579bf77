"""Tiny CLIP and DINO-style models with random weights, saved offline for metric tests.

They load through `load_clip` and `load_dino` like the real checkpoints, take 32x32 images
and use CLIP's real tokenizer, so evaluation code runs on a CPU without downloads. Their
scores carry no meaning.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from .models.tokenizer import offline_clip_tokenizer

TINY_LOGIT_SCALE = 50.0


def save_tiny_clip(folder: str | Path, seed: int = 0) -> Path:
    """Save a random 2-layer `CLIPModel` and its processor (32 px images) to `folder`.

    The image projection is negated after seeding so that, with seed 0, images and prompts
    have positive cosines and CLIPScore's clamp at 0 does not hide differences.
    """
    from transformers import (
        CLIPConfig,
        CLIPImageProcessor,
        CLIPModel,
        CLIPProcessor,
        CLIPTextConfig,
        CLIPVisionConfig,
    )

    text_config = CLIPTextConfig(
        vocab_size=49408,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=77,
        bos_token_id=49406,
        eos_token_id=49407,
        pad_token_id=49407,
        projection_dim=16,
    )
    vision_config = CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=32,
        patch_size=8,
        projection_dim=16,
    )
    config = CLIPConfig(
        text_config=text_config.to_dict(),
        vision_config=vision_config.to_dict(),
        projection_dim=16,
        logit_scale_init_value=math.log(TINY_LOGIT_SCALE),
    )
    torch.manual_seed(seed)
    model = CLIPModel(config).eval()
    with torch.no_grad():
        model.visual_projection.weight.neg_()
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
    )
    processor = CLIPProcessor(image_processor=image_processor, tokenizer=offline_clip_tokenizer())
    folder = Path(folder)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def save_tiny_dino(folder: str | Path, seed: int = 0) -> Path:
    """Save a random 2-layer ViT without pooler, as DINO checkpoints are, for 32 px images."""
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    config = ViTConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        image_size=32,
        patch_size=8,
    )
    torch.manual_seed(seed)
    folder = Path(folder)
    ViTModel(config, add_pooling_layer=False).eval().save_pretrained(folder)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder
