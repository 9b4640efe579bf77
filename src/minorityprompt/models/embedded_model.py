"""The embedded text-to-image model that ships inside the package.

It is a small Stable Diffusion pipeline (diffusers layout) trained on the long-tailed scenes
of `minorityprompt.longtail`: 32x32 images of one shape on a plain background. It runs on a
CPU without downloads. `embedded/README.md` describes its vocabulary and training.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..errors import MinorityPromptError

CLIP_VOCAB_SIZE = 49408
CLIP_BOS_TOKEN_ID = 49406
CLIP_EOS_TOKEN_ID = 49407

EMBEDDED_MODEL_FOLDER = Path(__file__).resolve().parent / "embedded"

# Captions in the training vocabulary, from the most common kind (shape only) to one that
# names every attribute. `minorityprompt.longtail.training_captions()` lists all 5,040.
EXAMPLE_CAPTIONS = (
    "a circle",
    "a square",
    "a triangle",
    "a red circle",
    "a blue square",
    "a green triangle",
    "a yellow diamond",
    "an orange cross",
    "a purple ring",
    "a small red circle",
    "a large blue square on the left",
    "a triangle on a white background",
    "a small purple diamond at the top on a gray background",
)


def embedded_model_path() -> Path:
    """Return the folder of the embedded pipeline, loadable with `from_pretrained`."""
    if not (EMBEDDED_MODEL_FOLDER / "model_index.json").is_file():
        raise MinorityPromptError(
            f"The embedded model is missing from {EMBEDDED_MODEL_FOLDER}. Reinstall the "
            "package, or train it with `python -m minorityprompt.models.embedded_training "
            f"{EMBEDDED_MODEL_FOLDER}`."
        )
    return EMBEDDED_MODEL_FOLDER


def load_embedded_pipeline(device: str = "cpu"):
    """Load the embedded model as a float32 `StableDiffusionPipeline` on `device`.

    The weights are stored as float16 to keep the package small, and load as float32.
    """
    from diffusers import StableDiffusionPipeline

    # diffusers 0.42 reads `dtype` and deprecates `torch_dtype`.
    # NOTE: this call was tested with diffusers 0.42.1 only.
    pipeline = StableDiffusionPipeline.from_pretrained(
        embedded_model_path(),
        dtype=torch.float32,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipeline.set_progress_bar_config(disable=True)
    return pipeline.to(device)


# ---------------------------------------------------------------------------------------------
# Architecture and file format


@dataclass(frozen=True)
class EmbeddedTrainingConfig:
    """Architecture and training hyperparameters of the embedded model."""

    seed: int = 0
    # VAE: three encoder blocks, so 32x32 images become 8x8 latents.
    vae_channels: tuple[int, ...] = (16, 32, 64)
    vae_norm_groups: int = 8
    vae_steps: int = 1200
    vae_batch_size: int = 32
    vae_learning_rate: float = 2e-3
    vae_warmup_steps: int = 50
    kl_weight: float = 1e-5
    # Text encoder.
    text_hidden_size: int = 64
    text_layers: int = 2
    text_heads: int = 4
    text_intermediate_size: int = 128
    # UNet: one level per channel count, halving the 8x8 latent each time. Attention runs at
    # every level but the 8x8 one, because attention at 8x8 made a training step (batch 64,
    # 2 CPU threads) about 4 times slower in a benchmark.
    unet_channels: tuple[int, ...] = (32, 64, 64)
    unet_norm_groups: int = 32
    unet_attention_heads: int = 4
    unet_steps: int = 3600
    batch_size: int = 64
    learning_rate: float = 1e-3
    warmup_steps: int = 200
    caption_dropout: float = 0.1
    min_snr_gamma: float = 5.0
    # Low-frequency training noise, see `embedded_training.training_noise`; off in the
    # shipped model. NOTE: continuing the shipped model for 600 steps with 0.15 each raised
    # the share of samples showing a captioned background from 30% to 62% (96 captions,
    # DDIM 50 steps, guidance 5), a measurement not yet folded into the shipped weights.
    offset_noise: float = 0.0
    coarse_noise: float = 0.0
    ema_decay: float = 0.999
    # Store weights as float16 to halve the folder size. The models still load as float32.
    save_float16: bool = True
    log_every: int = 100


def smoke_config(seed: int = 0) -> EmbeddedTrainingConfig:
    """Return a configuration with tiny models and a few steps, for tests."""
    return EmbeddedTrainingConfig(
        seed=seed,
        vae_channels=(8, 8, 8),
        vae_norm_groups=4,
        vae_steps=3,
        vae_batch_size=8,
        vae_warmup_steps=1,
        text_hidden_size=16,
        text_layers=1,
        text_heads=2,
        text_intermediate_size=32,
        unet_channels=(16, 16),
        unet_norm_groups=8,
        unet_attention_heads=2,
        unet_steps=3,
        batch_size=8,
        warmup_steps=1,
        log_every=1,
    )


def build_vae(config: EmbeddedTrainingConfig):
    from diffusers import AutoencoderKL

    levels = len(config.vae_channels)
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * levels,
        up_block_types=("UpDecoderBlock2D",) * levels,
        block_out_channels=config.vae_channels,
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=config.vae_norm_groups,
        sample_size=32,
        mid_block_add_attention=False,
    )
    # Start with a posterior standard deviation of exp(-3) ~ 0.05. With the default of about
    # 1, the sampled latents are mostly noise at first and reconstruction learns far slower.
    with torch.no_grad():
        vae.quant_conv.bias[4:].fill_(-6.0)
    return vae


def build_text_encoder(config: EmbeddedTrainingConfig):
    from transformers import CLIPTextConfig, CLIPTextModel

    text_config = CLIPTextConfig(
        vocab_size=CLIP_VOCAB_SIZE,
        hidden_size=config.text_hidden_size,
        intermediate_size=config.text_intermediate_size,
        projection_dim=config.text_hidden_size,
        num_hidden_layers=config.text_layers,
        num_attention_heads=config.text_heads,
        max_position_embeddings=77,
        bos_token_id=CLIP_BOS_TOKEN_ID,
        eos_token_id=CLIP_EOS_TOKEN_ID,
        pad_token_id=CLIP_EOS_TOKEN_ID,
    )
    return CLIPTextModel(text_config)


def build_unet(config: EmbeddedTrainingConfig):
    from diffusers import UNet2DConditionModel

    levels = len(config.unet_channels)
    return UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        block_out_channels=config.unet_channels,
        down_block_types=("DownBlock2D",) + ("CrossAttnDownBlock2D",) * (levels - 1),
        up_block_types=("CrossAttnUpBlock2D",) * (levels - 1) + ("UpBlock2D",),
        layers_per_block=1,
        cross_attention_dim=config.text_hidden_size,
        # diffusers reads `attention_head_dim` as the number of heads in this model class.
        attention_head_dim=config.unet_attention_heads,
        norm_num_groups=config.unet_norm_groups,
    )


def build_scheduler():
    """Return Stable Diffusion 1.x's DDIM scheduler configuration."""
    from diffusers import DDIMScheduler

    return DDIMScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
        prediction_type="epsilon",
    )


def save_pipeline(
    out_dir: Path, vae, text_encoder, unet, tokenizer, save_float16: bool
) -> None:
    """Save a `StableDiffusionPipeline` folder with safetensors weights.

    With `save_float16` the weights are stored as float16, and the text encoder's config
    records float32, so `from_pretrained` returns float32 models by default in transformers 5
    and diffusers 0.42.
    """
    from diffusers import StableDiffusionPipeline

    pipeline = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=build_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipeline.save_pretrained(out_dir, safe_serialization=True)
    if not save_float16:
        return
    for weights_path in sorted(out_dir.glob("*/*.safetensors")):
        tensors = load_file(weights_path)
        halved = {
            name: tensor.half() if tensor.is_floating_point() else tensor
            for name, tensor in tensors.items()
        }
        save_file(halved, weights_path, metadata={"format": "pt"})
    config_path = out_dir / "text_encoder" / "config.json"
    text_config = json.loads(config_path.read_text(encoding="utf-8"))
    text_config["dtype"] = "float32"
    config_path.write_text(json.dumps(text_config, indent=2) + "\n", encoding="utf-8")
