"""Tests of the embedded model: the training script in smoke mode and the shipped weights."""

import json

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, StableDiffusionPipeline

from minorityprompt.errors import MinorityPromptError
from minorityprompt.longtail.distribution import parse_caption
from minorityprompt.longtail.reader import read_scenes
from minorityprompt.models.embedded_model import (
    EXAMPLE_CAPTIONS,
    embedded_model_path,
    load_embedded_pipeline,
)
from minorityprompt.models.embedded_training import main, train_embedded_model

PIPELINE_PARTS = ("scheduler", "text_encoder", "tokenizer", "unet", "vae")


def _check_pipeline(pipeline: StableDiffusionPipeline) -> None:
    assert pipeline.safety_checker is None
    assert pipeline.feature_extractor is None
    for part in (pipeline.text_encoder, pipeline.unet, pipeline.vae):
        assert part.dtype == torch.float32
    assert isinstance(pipeline.scheduler, DDIMScheduler)
    scheduler = pipeline.scheduler.config
    assert scheduler.beta_schedule == "scaled_linear"
    assert scheduler.beta_start == pytest.approx(0.00085)
    assert scheduler.beta_end == pytest.approx(0.012)
    assert scheduler.num_train_timesteps == 1000
    assert scheduler.set_alpha_to_one is False
    assert scheduler.steps_offset == 1
    assert scheduler.clip_sample is False
    assert scheduler.prediction_type == "epsilon"
    text = pipeline.text_encoder.config
    assert (text.vocab_size, text.max_position_embeddings) == (49408, 77)
    assert (text.bos_token_id, text.eos_token_id, text.pad_token_id) == (49406, 49407, 49407)
    assert len(pipeline.tokenizer) == 49408
    assert pipeline.tokenizer("a red circle").input_ids == [49406, 320, 736, 7117, 49407]
    assert pipeline.unet.config.cross_attention_dim == text.hidden_size
    assert pipeline.unet.config.in_channels == pipeline.vae.config.latent_channels == 4


def _sample(pipeline, captions, steps: int, seed: int = 0) -> np.ndarray:
    return pipeline(
        list(captions),
        num_inference_steps=steps,
        guidance_scale=5.0,
        output_type="np",
        generator=torch.Generator().manual_seed(seed),
    ).images


def test_smoke_training_produces_loadable_pipeline(tmp_path):
    out_dir = train_embedded_model(tmp_path / "model", seed=3, smoke=True, num_threads=1)
    for part in PIPELINE_PARTS:
        assert (out_dir / part).is_dir(), part
    info = json.loads((out_dir / "training_info.json").read_text())
    assert info["config"]["seed"] == 3
    assert info["timings"]["total_seconds"] > 0

    # Loading without a dtype must also give float32 although the weights are float16.
    pipeline = StableDiffusionPipeline.from_pretrained(out_dir)
    _check_pipeline(pipeline)
    pipeline.set_progress_bar_config(disable=True)
    images = _sample(pipeline, ["a red circle", "an orange ring"], steps=2)
    assert images.shape == (2, 32, 32, 3)
    assert np.isfinite(images).all()


def test_training_rejects_non_empty_folder(tmp_path):
    (tmp_path / "existing.txt").write_text("keep")
    with pytest.raises(MinorityPromptError, match="not empty"):
        train_embedded_model(tmp_path, smoke=True)


@pytest.mark.slow
def test_smoke_training_cli_is_reproducible(tmp_path):
    for name in ("first", "second"):
        main([str(tmp_path / name), "--smoke", "--seed", "5", "--threads", "1"])
    first = (tmp_path / "first" / "unet" / "diffusion_pytorch_model.safetensors").read_bytes()
    second = (tmp_path / "second" / "unet" / "diffusion_pytorch_model.safetensors").read_bytes()
    assert first == second


def test_shipped_model_folder_is_small():
    folder = embedded_model_path()
    for part in PIPELINE_PARTS:
        assert (folder / part).is_dir(), part
    size = sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())
    assert size <= 21 * 1024 * 1024


def test_shipped_model_loads_and_samples():
    pipeline = load_embedded_pipeline()
    _check_pipeline(pipeline)
    pipeline_default = StableDiffusionPipeline.from_pretrained(embedded_model_path())
    _check_pipeline(pipeline_default)
    images = _sample(pipeline, EXAMPLE_CAPTIONS[:2], steps=10)
    assert images.shape == (2, 32, 32, 3)
    assert np.isfinite(images).all()
    assert images.std() > 0.05


def test_example_captions_parse():
    for caption in EXAMPLE_CAPTIONS:
        assert "shape" in parse_caption(caption)


@pytest.mark.slow
def test_shipped_model_follows_captions():
    pipeline = load_embedded_pipeline()
    captions = [caption for caption in EXAMPLE_CAPTIONS for _ in range(4)]
    images = _sample(pipeline, captions, steps=50, seed=1)
    readings = read_scenes(images)
    matches = []
    for caption, reading in zip(captions, readings, strict=True):
        named = parse_caption(caption)
        matches.append(
            all(getattr(reading.attributes, name) == value for name, value in named.items())
        )
    assert np.mean(matches) >= 0.7
