"""Train the embedded text-to-image model on the long-tailed scene distribution, on a CPU.

The result is a diffusers Stable Diffusion pipeline folder with four parts:

- an `AutoencoderKL` that maps 32x32 RGB images to 8x8x4 latents,
- a small `CLIPTextModel` with CLIP's real tokenizer,
- a `UNet2DConditionModel` that predicts the noise (epsilon),
- a `DDIMScheduler` with Stable Diffusion's scaled-linear betas.

Training runs in two stages:

1. The VAE learns to reconstruct all 19,440 distinct scene images, drawn uniformly so that
   rare attribute values reconstruct as well as common ones.
2. The text encoder and the UNet train jointly on (latent, caption) pairs drawn from the
   long-tailed training distribution, with `caption_dropout` of the captions replaced by the
   empty caption so that classifier-free guidance works.

Run `python -m minorityprompt.models.embedded_training OUT_DIR [--smoke]`.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..errors import MinorityPromptError
from ..longtail.distribution import (
    ATTRIBUTE_NAMES,
    NAMING_PROBABILITIES,
    all_attribute_combinations,
    caption_for,
    joint_probability,
)
from ..longtail.reader import read_scenes
from ..longtail.scenes import JITTER_OFFSETS, render_scene
from .embedded_model import (
    EmbeddedTrainingConfig,
    build_scheduler,
    build_text_encoder,
    build_unet,
    build_vae,
    save_pipeline,
    smoke_config,
)
from .tokenizer import offline_clip_tokenizer

logger = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------------
# Data


@dataclass
class SceneBank:
    """All 19,440 distinct scene images, indexed by combination * 9 + offset index."""

    images: torch.Tensor  # (count, 3, 32, 32) uint8
    combinations: list = field(repr=False)
    joint: np.ndarray = field(repr=False)  # probability of each combination

    @classmethod
    def build(cls) -> SceneBank:
        combinations = all_attribute_combinations()
        rendered = [
            render_scene(attributes, offset)
            for attributes in combinations
            for offset in JITTER_OFFSETS
        ]
        images = torch.from_numpy(np.stack(rendered)).permute(0, 3, 1, 2).contiguous()
        joint = np.array([joint_probability(attributes) for attributes in combinations])
        return cls(images, combinations, joint / joint.sum())

    def as_unit_range(self, indices: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Return the images at `indices` as float32 in [-1, 1]."""
        return self.images[torch.as_tensor(indices)].float() / 127.5 - 1.0

    def sample_training_batch(
        self, rng: np.random.Generator, count: int, caption_dropout: float
    ) -> tuple[np.ndarray, list[str]]:
        """Draw image indices and captions from the long-tailed training distribution."""
        combination_ids = rng.choice(len(self.combinations), size=count, p=self.joint)
        offset_ids = rng.integers(len(JITTER_OFFSETS), size=count)
        optional = [name for name in ATTRIBUTE_NAMES if name != "shape"]
        naming = rng.random((count, len(optional))) < [NAMING_PROBABILITIES[n] for n in optional]
        dropped = rng.random(count) < caption_dropout
        captions = []
        for row, combination_id in enumerate(combination_ids):
            if dropped[row]:
                captions.append("")
                continue
            named_optional = [
                name for name, is_named in zip(optional, naming[row], strict=True) if is_named
            ]
            named = ("shape", *named_optional)
            captions.append(caption_for(self.combinations[combination_id], named))
        return combination_ids * len(JITTER_OFFSETS) + offset_ids, captions


class CaptionTokens:
    """Cache of padded CLIP token ids per caption."""

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer
        self.cache: dict[str, torch.Tensor] = {}

    def __call__(self, captions: list[str]) -> torch.Tensor:
        missing = sorted({caption for caption in captions if caption not in self.cache})
        if missing:
            ids = self.tokenizer(
                missing,
                padding="max_length",
                max_length=self.tokenizer.model_max_length,
                truncation=True,
                return_tensors="pt",
            ).input_ids
            self.cache.update(zip(missing, ids, strict=True))
        return torch.stack([self.cache[caption] for caption in captions])


# ---------------------------------------------------------------------------------------------
# Training stages


def _learning_rate_factor(step: int, total: int, warmup: int) -> float:
    """Return the learning-rate multiplier: linear warmup, then cosine decay to 0.1."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress))


def train_vae(vae, bank: SceneBank, config: EmbeddedTrainingConfig, rng: np.random.Generator):
    """Fit the VAE to reconstruct scene images drawn uniformly from the bank."""
    optimizer = torch.optim.AdamW(vae.parameters(), lr=config.vae_learning_rate, weight_decay=0)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: _learning_rate_factor(step, config.vae_steps, config.vae_warmup_steps),
    )
    vae.train()
    progress = tqdm(range(config.vae_steps), desc="VAE", mininterval=5.0)
    for step in progress:
        images = bank.as_unit_range(rng.integers(len(bank.images), size=config.vae_batch_size))
        posterior = vae.encode(images).latent_dist
        reconstruction = vae.decode(posterior.sample()).sample
        reconstruction_loss = torch.nn.functional.mse_loss(reconstruction, images)
        kl_loss = posterior.kl().mean() / images[0].numel()
        loss = reconstruction_loss + config.kl_weight * kl_loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        if step % config.log_every == 0 or step == config.vae_steps - 1:
            progress.set_postfix(mse=f"{reconstruction_loss.item():.5f}")
            logger.info(
                "VAE step %d: reconstruction MSE %.5f, KL %.2f",
                step, reconstruction_loss.item(), kl_loss.item(),
            )
    vae.eval()


@torch.no_grad()
def encode_bank(vae, bank: SceneBank, chunk_size: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the posterior mean and standard deviation of every bank image."""
    means, stds = [], []
    for start in tqdm(range(0, len(bank.images), chunk_size), desc="encode", mininterval=5.0):
        indices = torch.arange(start, min(start + chunk_size, len(bank.images)))
        posterior = vae.encode(bank.as_unit_range(indices)).latent_dist
        means.append(posterior.mean)
        stds.append(posterior.std)
    return torch.cat(means), torch.cat(stds)


@torch.no_grad()
def reconstruction_accuracy(vae, bank: SceneBank, rng: np.random.Generator, count: int) -> float:
    """Return the fraction of reconstructions whose read attributes all match the original."""
    indices = rng.integers(len(bank.images), size=count)
    images = bank.as_unit_range(indices)
    decoded = vae.decode(vae.encode(images).latent_dist.mean).sample
    pixels = ((decoded.clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1).numpy()
    readings = read_scenes(pixels)
    truths = [bank.combinations[index // len(JITTER_OFFSETS)] for index in indices]
    return float(np.mean([r.attributes == t for r, t in zip(readings, truths, strict=True)]))


def _update_ema(ema_model, model, decay: float) -> None:
    with torch.no_grad():
        pairs = zip(ema_model.parameters(), model.parameters(), strict=True)
        for ema_parameter, parameter in pairs:
            ema_parameter.lerp_(parameter, 1.0 - decay)


COARSE_NOISE_SIZES = (2, 4)


def training_noise(
    shape: torch.Size, offset_strength: float, coarse_strength: float
) -> torch.Tensor:
    """Draw standard Gaussian noise plus optional low-frequency components.

    At t = 999 the scaled-linear schedule keeps sqrt(0.0047) ~ 7% of the clean latent, and
    this residual can show the UNet a scene's background and layout during training. Sampling
    starts from pure noise, which lacks it. A per-channel constant (`offset_strength`) and
    patterns of `COARSE_NOISE_SIZES` cells upsampled to the latent size (`coarse_strength`)
    mask the residual, so the UNet has to take those properties from the caption.
    """
    batch, channels, height, width = shape
    noise = torch.randn(shape)
    if offset_strength > 0:
        noise = noise + offset_strength * torch.randn(batch, channels, 1, 1)
    if coarse_strength > 0:
        for size in COARSE_NOISE_SIZES:
            coarse = torch.randn(batch, channels, size, size)
            noise = noise + coarse_strength * torch.nn.functional.interpolate(
                coarse, size=(height, width), mode="nearest"
            )
    return noise


def train_denoiser(
    unet, text_encoder, latents: tuple[torch.Tensor, torch.Tensor], scaling_factor: float,
    bank: SceneBank, tokens: CaptionTokens, config: EmbeddedTrainingConfig,
    rng: np.random.Generator,
):
    """Train the UNet and the text encoder jointly on epsilon prediction.

    The loss uses Min-SNR weighting, min(SNR, gamma) / SNR per sample, which lowers the weight
    of low-noise timesteps. Returns exponential moving averages (EMA) of both models.
    """
    scheduler = build_scheduler()
    alphas_cumprod = scheduler.alphas_cumprod
    snr = alphas_cumprod / (1.0 - alphas_cumprod)
    loss_weights = torch.clamp(snr, max=config.min_snr_gamma) / snr

    parameters = list(unet.parameters()) + list(text_encoder.parameters())
    optimizer = torch.optim.AdamW(parameters, lr=config.learning_rate, weight_decay=0)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: _learning_rate_factor(step, config.unet_steps, config.warmup_steps),
    )
    ema_unet, ema_text_encoder = copy.deepcopy(unet), copy.deepcopy(text_encoder)
    latent_means, latent_stds = latents
    unet.train()
    text_encoder.train()
    progress = tqdm(range(config.unet_steps), desc="UNet", mininterval=5.0)
    for step in progress:
        indices, captions = bank.sample_training_batch(
            rng, config.batch_size, config.caption_dropout
        )
        indices = torch.from_numpy(indices)
        mean, std = latent_means[indices], latent_stds[indices]
        clean = (mean + std * torch.randn_like(mean)) * scaling_factor
        noise = training_noise(clean.shape, config.offset_noise, config.coarse_noise)
        timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (len(clean),))
        noisy = scheduler.add_noise(clean, noise, timesteps)

        hidden_states = text_encoder(tokens(captions)).last_hidden_state
        prediction = unet(noisy, timesteps, hidden_states).sample
        per_sample = (prediction - noise).pow(2).mean(dim=(1, 2, 3))
        loss = (per_sample * loss_weights[timesteps]).mean()

        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
        schedule.step()
        # Warm up the EMA so early weights do not dominate it.
        decay = min(config.ema_decay, (1 + step) / (10 + step))
        _update_ema(ema_unet, unet, decay)
        _update_ema(ema_text_encoder, text_encoder, decay)
        if step % config.log_every == 0 or step == config.unet_steps - 1:
            progress.set_postfix(loss=f"{loss.item():.4f}")
            logger.info("UNet step %d: weighted loss %.4f", step, loss.item())
    return ema_unet.eval(), ema_text_encoder.eval()


# ---------------------------------------------------------------------------------------------
# Pipeline assembly


def _latent_scaling_factor(means: torch.Tensor, stds: torch.Tensor) -> float:
    """Return 1 / standard deviation of posterior samples over the bank."""
    second_moment = (means.pow(2) + stds.pow(2)).mean()
    variance = second_moment - means.mean().pow(2)
    return float(1.0 / variance.sqrt())


def train_embedded_model(
    out_dir: str | Path,
    seed: int = 0,
    config: EmbeddedTrainingConfig | None = None,
    smoke: bool = False,
    num_threads: int | None = None,
    overwrite: bool = False,
) -> Path:
    """Train the embedded model from `seed` and save it as a diffusers pipeline folder.

    Args:
        out_dir: Destination folder. It must be empty or missing unless `overwrite` is set.
        seed: Seeds numpy (data) and torch (initialization, noise). Overrides `config.seed`.
        config: Hyperparameters. The default is `EmbeddedTrainingConfig()`, or
            `smoke_config()` when `smoke` is set.
        smoke: Train tiny models for a few steps, to test the code path.
        num_threads: Torch CPU threads, or None to keep the current setting. A fixed seed,
            thread count and machine reproduce the weights. Another thread count changes
            the floating-point reduction order and so the weights.
        overwrite: Allow writing into a non-empty folder.

    Returns:
        The output folder, loadable with `StableDiffusionPipeline.from_pretrained`.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise MinorityPromptError(
            f"Output folder {out_dir} is not empty. Pass overwrite=True (--overwrite) or "
            "choose an empty folder."
        )
    config = config or (smoke_config() if smoke else EmbeddedTrainingConfig())
    config = replace(config, seed=seed)
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    timings: dict[str, float] = {}
    start = time.perf_counter()
    logger.info("Training the embedded model with seed %d and %d threads", seed,
                torch.get_num_threads())

    bank = SceneBank.build()
    vae = build_vae(config)
    train_vae(vae, bank, config, rng)
    timings["vae_seconds"] = time.perf_counter() - start
    reconstruction = reconstruction_accuracy(vae, bank, rng, count=min(512, len(bank.images)))
    logger.info("VAE trained in %.0f s. Attributes read correctly from %.1f%% of "
                "reconstructions", timings["vae_seconds"], 100 * reconstruction)

    means, stds = encode_bank(vae, bank)
    scaling_factor = _latent_scaling_factor(means, stds)
    vae.register_to_config(scaling_factor=scaling_factor)
    logger.info("Latent scaling factor %.4f", scaling_factor)

    denoiser_start = time.perf_counter()
    tokenizer = offline_clip_tokenizer()
    text_encoder = build_text_encoder(config)
    unet = build_unet(config)
    unet, text_encoder = train_denoiser(
        unet, text_encoder, (means, stds), scaling_factor, bank, CaptionTokens(tokenizer),
        config, rng,
    )
    timings["denoiser_seconds"] = time.perf_counter() - denoiser_start
    logger.info("Text encoder and UNet trained in %.0f s", timings["denoiser_seconds"])

    out_dir.mkdir(parents=True, exist_ok=True)
    save_pipeline(out_dir, vae, text_encoder, unet, tokenizer, config.save_float16)
    timings["total_seconds"] = time.perf_counter() - start
    info = {
        "config": asdict(config),
        "num_threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "vae_reconstruction_accuracy": reconstruction,
        "latent_scaling_factor": scaling_factor,
        "timings": timings,
    }
    (out_dir / "training_info.json").write_text(json.dumps(info, indent=2) + "\n", "utf-8")
    logger.info("Saved the embedded model to %s after %.0f s", out_dir, timings["total_seconds"])
    return out_dir


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m minorityprompt.models.embedded_training",
        description="Train the embedded text-to-image model on the long-tailed scenes.",
    )
    parser.add_argument("out_dir", type=Path, help="folder to write the pipeline into")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--smoke", action="store_true",
                        help="train tiny models for a few steps, to test the code path")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's setting)")
    parser.add_argument("--vae-steps", type=int, default=None, help="VAE optimizer steps")
    parser.add_argument("--unet-steps", type=int, default=None,
                        help="optimizer steps of the joint text encoder and UNet stage")
    parser.add_argument("--overwrite", action="store_true",
                        help="allow writing into a non-empty output folder")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    config = smoke_config() if args.smoke else EmbeddedTrainingConfig()
    if args.vae_steps is not None:
        config = replace(config, vae_steps=args.vae_steps)
    if args.unet_steps is not None:
        config = replace(config, unet_steps=args.unet_steps)
    train_embedded_model(
        args.out_dir, seed=args.seed, config=config, num_threads=args.threads,
        overwrite=args.overwrite,
    )


if __name__ == "__main__":
    main()
