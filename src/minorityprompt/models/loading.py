"""Load diffusers pipelines from presets, hub ids, local folders and single checkpoint files."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import torch

from ..errors import MinorityPromptError
from .presets import PRESETS, Preset

logger = logging.getLogger(__name__)

SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".bin")
FAMILIES = ("sd15", "sd2", "sdxl")


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def default_dtype(device: torch.device) -> torch.dtype:
    """fp16 on GPUs, fp32 on CPUs (where fp16 kernels are slow or missing)."""
    return torch.float16 if device.type == "cuda" else torch.float32


def _pipeline_class(family: str):
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    if family not in FAMILIES:
        raise MinorityPromptError(f"Unknown model family {family!r}; use one of {FAMILIES}.")
    return StableDiffusionXLPipeline if family == "sdxl" else StableDiffusionPipeline


def guess_single_file_family(path: Path) -> str:
    """`"sdxl"` if a checkpoint has SDXL's second text encoder, else `"sd15"`."""
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            keys = handle.keys()
            if any(key.startswith("conditioner.embedders.1") for key in keys):
                return "sdxl"
    return "sd15"


def _finish(pipe, device: torch.device):
    pipe = pipe.to(device)
    for component in pipe.components.values():
        if isinstance(component, torch.nn.Module):
            component.eval()
    return pipe


def _load_preset(preset: Preset, device: torch.device, dtype: torch.dtype):
    if preset.source == "embedded":
        from .embedded_model import embedded_model_path

        return load_pipeline(str(embedded_model_path()), device=device, dtype=torch.float32)
    if preset.source.startswith("tiny-"):
        from ..testing import tiny_sd_pipeline

        return _finish(tiny_sd_pipeline(preset.source.removeprefix("tiny-")), device)

    pipe_class = _pipeline_class(preset.family)
    try:
        if preset.unet_file is not None:
            from diffusers import UNet2DConditionModel
            from huggingface_hub import hf_hub_download
            from safetensors.torch import load_file

            config = UNet2DConditionModel.load_config(preset.source, subfolder="unet")
            unet = UNet2DConditionModel.from_config(config)
            repo, filename = preset.unet_file
            unet.load_state_dict(load_file(hf_hub_download(repo, filename)))
            pipe = pipe_class.from_pretrained(preset.source, unet=unet.to(dtype), torch_dtype=dtype)
        else:
            pipe = pipe_class.from_pretrained(preset.source, torch_dtype=dtype)
    except OSError as error:
        raise MinorityPromptError(
            f"Could not load preset {preset.name!r} from the hub id {preset.source!r}: {error}. "
            "Download it with `huggingface-cli download` on a machine with hub access and pass "
            "the local folder to --model, or set HF_HOME to a cache that holds it."
        ) from error
    return _finish(pipe, device)


def load_pipeline(
    name_or_path: str,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    family: str | None = None,
):
    """Load a Stable Diffusion or SDXL pipeline.

    Args:
        name_or_path: A preset name (`embedded`, `sd15`, `sd2`, `sdxl`, `sdxl-lightning`,
            `tiny-sd15`, ...), a local diffusers folder, a single checkpoint file
            (`.safetensors`, `.ckpt`), or a hub id such as `owner/model`.
        device: Defaults to CUDA when available, else CPU.
        dtype: Defaults to fp16 on CUDA and fp32 on CPU.
        family: `sd15`, `sd2` or `sdxl` for single files; guessed from the keys if `None`.

    Raises:
        MinorityPromptError: The path does not exist and is no preset or hub id, or the hub
            could not provide the model.
    """
    device = torch.device(device) if device is not None else default_device()
    dtype = dtype or default_dtype(device)
    if name_or_path in PRESETS:
        return _load_preset(PRESETS[name_or_path], device, dtype)

    path = Path(os.path.expanduser(name_or_path))
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            raise MinorityPromptError(
                f"The folder {str(path)!r} has no model_index.json, so it is not a diffusers "
                "pipeline; save one with pipe.save_pretrained(folder) or pass a checkpoint file."
            )
        from diffusers import DiffusionPipeline

        class_name = json.loads((path / "model_index.json").read_text()).get("_class_name", "")
        logger.info("Loading %s from %s", class_name or "a pipeline", path)
        return _finish(DiffusionPipeline.from_pretrained(str(path), torch_dtype=dtype), device)
    if path.is_file():
        if path.suffix not in SINGLE_FILE_SUFFIXES:
            raise MinorityPromptError(
                f"{str(path)!r} is not a checkpoint file; expected one of {SINGLE_FILE_SUFFIXES}."
            )
        family = family or guess_single_file_family(path)
        pipe = _pipeline_class(family).from_single_file(str(path), torch_dtype=dtype)
        return _finish(pipe, device)

    looks_like_hub_id = name_or_path.count("/") == 1 and not name_or_path.startswith(
        (".", "/", "~")
    )
    if not looks_like_hub_id:
        raise MinorityPromptError(
            f"Model {name_or_path!r} is not a preset ({', '.join(sorted(PRESETS))}), and no "
            "such file or folder exists. Pass a diffusers folder, a .safetensors file or a "
            "hub id such as owner/model."
        )
    from diffusers import DiffusionPipeline

    try:
        pipe = DiffusionPipeline.from_pretrained(name_or_path, torch_dtype=dtype)
    except OSError as error:
        raise MinorityPromptError(
            f"Could not load {name_or_path!r}: no such local path, and loading from the hub failed "
            f"it ({error}). Check the id, or download it where the hub is reachable and pass "
            "the folder."
        ) from error
    return _finish(pipe, device)
