"""Tiny Stable Diffusion pipelines with random weights, built offline.

They use the same diffusers and transformers classes as real checkpoints (SD 1.x, SD 2.x with
v-prediction, SDXL) and CLIP's real tokenizer, so every code path runs on a CPU in seconds.
Use them to test objectives and solver loops; their images are noise.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from .errors import MinorityPromptError
from .models.tokenizer import offline_clip_tokenizer

logger = logging.getLogger(__name__)

FAMILIES = ("sd15", "sd2", "sdxl")
CLIP_VOCAB_SIZE = 49408
BOS_ID, EOS_ID = 49406, 49407


def _text_config(hidden_size: int, projection_dim: int, pad_id: int):
    from transformers import CLIPTextConfig

    # eos_token_id must be the real EOS id: with the legacy value 2, CLIP pools at the
    # highest token id of each row instead of at EOS.
    return CLIPTextConfig(
        bos_token_id=BOS_ID,
        eos_token_id=EOS_ID,
        pad_token_id=pad_id,
        hidden_size=hidden_size,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=3,
        projection_dim=projection_dim,
        vocab_size=CLIP_VOCAB_SIZE,
        max_position_embeddings=77,
        hidden_act="gelu",
        layer_norm_eps=1e-5,
    )


def _vae():
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        block_out_channels=(16, 32),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=4,
        norm_num_groups=8,
        sample_size=32,
    )


def _scheduler(prediction_type: str, sdxl: bool):
    from diffusers import DDIMScheduler

    return DDIMScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
        prediction_type=prediction_type,
        timestep_spacing="leading",
    )


def tiny_sd_pipeline(family: str = "sd15", seed: int = 0):
    """A `StableDiffusionPipeline` (sd15, sd2) or `StableDiffusionXLPipeline` (sdxl).

    Weights are random but fixed by `seed`. The VAE halves the resolution, so 32x32 images
    have 16x16 latents. sd2 uses v-prediction and pads with `"!"` as SD 2.x does.
    """
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    if family not in FAMILIES:
        raise MinorityPromptError(f"Unknown tiny model family {family!r}; use one of {FAMILIES}.")

    torch.manual_seed(seed)
    if family in ("sd15", "sd2"):
        pad_token = "<|endoftext|>" if family == "sd15" else "!"
        tokenizer = offline_clip_tokenizer(pad_token)
        unet = UNet2DConditionModel(
            block_out_channels=(32, 64),
            layers_per_block=1,
            sample_size=16,
            in_channels=4,
            out_channels=4,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            cross_attention_dim=32,
            attention_head_dim=8,
            norm_num_groups=8,
            use_linear_projection=family == "sd2",
        )
        text_encoder = CLIPTextModel(_text_config(32, 32, tokenizer.pad_token_id))
        pipe = StableDiffusionPipeline(
            vae=_vae(),
            text_encoder=text_encoder,
            tokenizer=tokenizer,
            unet=unet,
            scheduler=_scheduler("epsilon" if family == "sd15" else "v_prediction", False),
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
    else:
        tokenizer = offline_clip_tokenizer()
        tokenizer_2 = offline_clip_tokenizer("!")
        unet = UNet2DConditionModel(
            block_out_channels=(32, 64),
            layers_per_block=1,
            sample_size=16,
            in_channels=4,
            out_channels=4,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            attention_head_dim=(2, 4),
            use_linear_projection=True,
            addition_embed_type="text_time",
            addition_time_embed_dim=8,
            transformer_layers_per_block=(1, 1),
            projection_class_embeddings_input_dim=8 * 6 + 32,
            cross_attention_dim=32 + 32,
            norm_num_groups=8,
        )
        pipe = StableDiffusionXLPipeline(
            vae=_vae(),
            text_encoder=CLIPTextModel(_text_config(32, 32, tokenizer.pad_token_id)),
            text_encoder_2=CLIPTextModelWithProjection(
                _text_config(32, 32, tokenizer_2.pad_token_id)
            ),
            tokenizer=tokenizer,
            tokenizer_2=tokenizer_2,
            unet=unet,
            scheduler=_scheduler("epsilon", True),
            force_zeros_for_empty_prompt=True,
        )
    for module in pipe.components.values():
        if isinstance(module, torch.nn.Module):
            module.eval()
    pipe.set_progress_bar_config(disable=True)
    return pipe


def save_tiny_pipeline(folder: str | Path, family: str = "sd15", seed: int = 0) -> Path:
    """Build a tiny pipeline and save it in the diffusers folder layout."""
    folder = Path(folder)
    tiny_sd_pipeline(family, seed).save_pretrained(folder)
    logger.info("Saved a tiny %s pipeline to %s", family, folder)
    return folder
