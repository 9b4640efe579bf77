"""Options of an evaluation, and the models and reference features it loads."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from ..errors import MinorityPromptError
from ..metrics.features import DEFAULT_CLIP, DEFAULT_DINO, ImageFeatureExtractor
from ..metrics.reward_models import IMAGE_REWARD_MODEL, PICKSCORE_MODEL, PICKSCORE_PROCESSOR
from ..models.loading import load_pipeline
from ..models.presets import PRESETS
from ..outputs import read_records
from .likelihood import LikelihoodSettings
from .selection import source_is_available, source_is_local

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
FEATURE_FILE_SUFFIXES = (".npy", ".pt")
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass
class EvaluationOptions:
    """What to compute and with which models.

    Model sources left at `None` use the standard checkpoint (CLIP ViT-L/14, DINO ViT-S/16,
    PickScore v1, ImageReward v1.0). A metric that needs one of them is in the default set
    only when the checkpoint is on disk already, but an explicit source or `--metrics` entry
    may download it.

    Attributes:
        metrics: Metric names; `None` selects every metric whose inputs are present.
        reference: Real images for PRDC and rarity: a folder of images, or a `.npy`/`.pt`
            file of features, shape (N, D), computed with the `features` extractor.
        features: "clip" or "dino", the feature space of PRDC and rarity.
        model: The diffusion model of the likelihood; each image's run metadata if `None`.
        dtype: Weights dtype of that model ("float32" if `None`).
        batch_size: Images per forward pass of the feature and reward models.
        nearest_k: k of precision, recall, density and coverage.
        rarity_k: k of the rarity score.
        save_reference_features: Write the reference features here (`.npy` or `.pt`).
        recompute: Ignore values stored in an earlier `evaluation.json`.
    """

    metrics: list[str] | None = None
    reference: str | Path | None = None
    features: str = "clip"
    clip: str | None = None
    dino: str | None = None
    pickscore: str | None = None
    pickscore_processor: str | None = None
    image_reward: str | None = None
    model: str | None = None
    family: str | None = None
    device: str | None = None
    dtype: str | None = None
    batch_size: int = 32
    nearest_k: int = 5
    rarity_k: int = 3
    likelihood: LikelihoodSettings = field(default_factory=LikelihoodSettings)
    save_reference_features: str | Path | None = None
    recompute: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        if self.features not in ("clip", "dino"):
            raise MinorityPromptError(
                f"Invalid feature space {self.features!r} for PRDC and rarity; use 'clip' or "
                "'dino'."
            )
        for name in ("batch_size", "nearest_k", "rarity_k"):
            if getattr(self, name) < 1:
                raise MinorityPromptError(f"{name} must be at least 1, got {getattr(self, name)}.")
        if self.dtype is not None and self.dtype not in DTYPES:
            raise MinorityPromptError(f"Unknown dtype {self.dtype!r}; use one of {list(DTYPES)}.")

    def source(self, kind: str) -> str:
        """Return the model source of `kind` ("clip", "dino", ...), the standard one if unset."""
        defaults = {
            "clip": DEFAULT_CLIP,
            "dino": DEFAULT_DINO,
            "pickscore": PICKSCORE_MODEL,
            "pickscore_processor": PICKSCORE_PROCESSOR,
            "image_reward": IMAGE_REWARD_MODEL,
        }
        given = getattr(self, kind)
        return str(given) if given is not None else defaults[kind]

    def on_disk(self, kind: str) -> bool:
        """Return whether the source of `kind` was set, or the standard one is on disk."""
        return getattr(self, kind) is not None or source_is_available(self.source(kind))


def model_is_local(name: str) -> bool:
    """Return whether the diffusion model `name` loads without a download."""
    preset = PRESETS.get(name)
    if preset is not None:
        if preset.source == "embedded" or preset.source.startswith("tiny-"):
            return True
        return source_is_available(preset.source)
    return source_is_local(name) or source_is_available(name)


class ModelCache:
    """Loads each model once, on first use."""

    def __init__(self, options: EvaluationOptions, local_only: Callable[[str], bool]) -> None:
        self.options = options
        self.local_only = local_only
        self._models: dict[tuple, Any] = {}

    def _get(self, key: tuple, load: Callable[[], Any]) -> Any:
        if key not in self._models:
            self._models[key] = load()
        return self._models[key]

    def extractor(self, kind: str) -> ImageFeatureExtractor:
        from ..metrics.features import load_clip, load_dino

        source = self.options.source(kind)
        local = self.local_only(kind)
        loader = load_clip if kind == "clip" else load_dino
        return self._get(
            (kind,),
            lambda: loader(source, device=self.options.device, local_files_only=local),
        )

    def pickscore(self) -> ImageFeatureExtractor:
        from ..metrics.reward_models import load_pickscore

        return self._get(
            ("pickscore",),
            lambda: load_pickscore(
                self.options.source("pickscore"),
                self.options.source("pickscore_processor"),
                device=self.options.device,
                local_files_only=self.local_only("pickscore"),
            ),
        )

    def image_reward(self) -> Any:
        from ..metrics.reward_models import load_image_reward

        source = self.options.source("image_reward")
        return self._get(
            ("image_reward",), lambda: load_image_reward(source, device=self.options.device)
        )

    def pipeline(self, name: str) -> Any:
        def load():
            dtype = DTYPES[self.options.dtype or "float32"]
            pipe = load_pipeline(
                name, device=self.options.device, dtype=dtype, family=self.options.family
            )
            # Only latents need gradients, for the divergence; weights stay frozen.
            pipe.unet.requires_grad_(False)
            return pipe

        return self._get(("pipeline", name), load)

    def release(self, *kinds: str) -> None:
        """Drop loaded models whose key starts with one of `kinds`, to free memory."""
        for key in [key for key in self._models if key[0] in kinds]:
            del self._models[key]
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def reference_images(folder: Path) -> list[Path]:
    """List the image files of a reference folder: a run's PNGs, or every image below it."""
    records = read_records(folder)
    if records:
        paths = [folder / record["file"] for record in records]
        return [path for path in paths if path.is_file()]
    files = [
        path
        for path in sorted(folder.rglob("*"))
        if path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")
    ]
    return files


def reference_fingerprint(path: Path) -> str:
    """Hash a reference file, or a folder's images by name relative to the folder, size and
    modification time, so that a moved copy keeps the hash."""
    digest = hashlib.sha256()
    if path.is_file():
        files, root = [path], path.parent
    else:
        files, root = reference_images(path), path
    for file in files:
        stat = file.stat()
        digest.update(f"{file.relative_to(root)}|{stat.st_size}|{stat.st_mtime_ns}|".encode())
    return digest.hexdigest()


def load_feature_file(path: Path) -> Tensor:
    """Read a (N, D) feature matrix from `.npy`, or from `.pt` (a tensor or {"features": ...})."""
    if path.suffix == ".npy":
        data: Any = np.load(path, allow_pickle=False)
    else:
        data = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(data, dict):
            if "features" not in data:
                raise MinorityPromptError(
                    f"Reference file {str(path)!r} contains a dict without a 'features' entry; "
                    "save the (N, D) tensor itself or under the key 'features'."
                )
            data = data["features"]
    features = torch.as_tensor(np.asarray(data) if not isinstance(data, Tensor) else data)
    if features.ndim != 2:
        raise MinorityPromptError(
            f"Reference features in {str(path)!r} have shape {tuple(features.shape)}; expected "
            "(N, D), one row per real image."
        )
    return features.float()


def save_feature_file(features: Tensor, path: Path) -> None:
    if path.suffix == ".npy":
        np.save(path, features.numpy())
    elif path.suffix == ".pt":
        torch.save(features, path)
    else:
        raise MinorityPromptError(
            f"Cannot save reference features to {str(path)!r}; use a .npy or .pt file name."
        )
    logger.info("Saved %d reference features to %s", features.shape[0], path)


def load_reference_features(
    path: Path,
    extract: Callable[[Sequence[Path]], Tensor],
    save_to: Path | None = None,
) -> Tensor:
    """Load reference features from a feature file, or embed a folder's images with `extract`."""
    if path.is_file():
        if path.suffix not in FEATURE_FILE_SUFFIXES:
            raise MinorityPromptError(
                f"Reference {str(path)!r} is neither a folder of images nor a feature file; "
                f"pass a folder or a {' or '.join(FEATURE_FILE_SUFFIXES)} file."
            )
        features = load_feature_file(path)
    elif path.is_dir():
        files = reference_images(path)
        if not files:
            raise MinorityPromptError(
                f"Reference folder {str(path)!r} contains no image "
                f"({', '.join(IMAGE_SUFFIXES)}); pass a folder of real images."
            )
        logger.info("Embedding %d reference images from %s", len(files), path)
        features = extract(files)
    else:
        raise MinorityPromptError(
            f"Reference {str(path)!r} does not exist; pass a folder of real images or a "
            ".npy/.pt feature file."
        )
    if save_to is not None:
        save_feature_file(features, Path(save_to))
    return features


def open_images(paths: Sequence[Path]) -> list[Image.Image]:
    images = []
    for path in paths:
        with Image.open(path) as image:
            images.append(image.convert("RGB"))
    return images

