"""Image and text embeddings from CLIP or DINO models loaded by local path or hub id.

These replace Inception features for the feature-space metrics (precision/recall/density/
coverage, rarity score, in-batch similarity). CLIP features are the projected image embeddings
(`get_image_features`); DINO features are the CLS token of the last hidden layer.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..errors import MinorityPromptError
from .images import ImageBatch, to_uint8_images

logger = logging.getLogger(__name__)

FeatureKind = Literal["clip", "dino"]
DEFAULT_CLIP = "openai/clip-vit-large-patch14"
DEFAULT_DINO = "facebook/dino-vits16"


@dataclass
class ImageFeatureExtractor:
    """A loaded image model with its processor.

    Attributes:
        kind: "clip" (a `transformers.CLIPModel`, which also embeds text) or "dino" (any
            `AutoModel` whose `last_hidden_state[:, 0]` is a CLS token, such as DINO ViTs).
        model: The model, in eval mode on `device`.
        processor: The matching `CLIPProcessor` or image processor.
        device: Where the model runs.
    """

    kind: FeatureKind
    model: Any
    processor: Any
    device: torch.device

    @torch.no_grad()
    def extract(self, images: ImageBatch, batch_size: int = 32, progress: bool = False) -> Tensor:
        """Embed images; return a (N, feature_dim) float32 CPU tensor."""
        items = to_uint8_images(images)
        check_batch_size(batch_size)
        image_processor = getattr(self.processor, "image_processor", self.processor)
        features = []
        starts = range(0, len(items), batch_size)
        for start in tqdm(starts, desc=f"{self.kind} image features", disable=not progress):
            inputs = image_processor(images=items[start : start + batch_size], return_tensors="pt")
            pixel_values = inputs["pixel_values"].to(self.device, dtype=self.model.dtype)
            if self.kind == "clip":
                embeddings = pooled_output(self.model.get_image_features(pixel_values=pixel_values))
            else:
                embeddings = self.model(pixel_values=pixel_values).last_hidden_state[:, 0]
            features.append(embeddings.float().cpu())
        return torch.cat(features)


def pooled_output(output: Any) -> Tensor:
    """Return the embedding tensor of `get_image_features`/`get_text_features`.

    transformers 5 returns a `BaseModelOutputWithPooling` whose `pooler_output` is the projected
    embedding; transformers 4 returns the tensor itself.
    """
    if isinstance(output, Tensor):
        return output
    return output.pooler_output


def check_batch_size(batch_size: int) -> None:
    if batch_size < 1:
        raise MinorityPromptError(f"batch_size must be at least 1, got {batch_size}.")


def clip_text_embeddings(
    extractor: ImageFeatureExtractor,
    prompts: Sequence[str],
    batch_size: int = 32,
) -> Tensor:
    """Embed prompts with a CLIP text tower; return a (N, dim) float32 CPU tensor.

    Prompts longer than the text model's `max_position_embeddings` (77 for CLIP) are truncated
    by the tokenizer, which keeps BOS, the first tokens and EOS. CLIP pools the text embedding
    at EOS, so cutting the ids after tokenizing would pool the wrong token.
    """
    if extractor.kind != "clip":
        raise MinorityPromptError(
            f"text embeddings need a CLIP model, but the extractor is {extractor.kind!r}."
        )
    check_batch_size(batch_size)
    tokenizer = extractor.processor.tokenizer
    max_length = extractor.model.config.text_config.max_position_embeddings
    lengths = [len(ids) for ids in tokenizer(list(prompts), truncation=False)["input_ids"]]
    too_long = sum(length > max_length for length in lengths)
    if too_long:
        logger.warning(
            "%d of %d prompts exceed %d tokens and are truncated for the CLIP text encoder",
            too_long,
            len(lengths),
            max_length,
        )
    features = []
    with torch.no_grad():
        for start in range(0, len(prompts), batch_size):
            tokens = tokenizer(
                list(prompts[start : start + batch_size]),
                padding=True,
                truncation=True,
                max_length=max_length,
                return_tensors="pt",
            )
            output = extractor.model.get_text_features(
                input_ids=tokens["input_ids"].to(extractor.device),
                attention_mask=tokens["attention_mask"].to(extractor.device),
            )
            features.append(pooled_output(output).float().cpu())
    return torch.cat(features)


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def check_model_source(model_name_or_path: str | os.PathLike[str]) -> str:
    """Return the source as a string, and raise if it is a local path that does not exist.

    Absolute paths and paths starting with "." or "~" are local. Any other string is passed on
    unchanged, so transformers loads it as a folder if one exists or else as a hub id.
    """
    source = os.fspath(model_name_or_path)
    looks_local = os.path.isabs(source) or source.startswith((".", "~"))
    if looks_local and not Path(source).expanduser().exists():
        raise MinorityPromptError(
            f"model folder {source!r} was not found; pass an existing folder saved with "
            "save_pretrained, or a Hugging Face hub id."
        )
    return str(Path(source).expanduser()) if looks_local else source


def load_pretrained(loader: Any, source: str, what: str, **kwargs: Any) -> Any:
    """Call `loader.from_pretrained`, turning a missing download into a clear error."""
    try:
        return loader.from_pretrained(source, **kwargs)
    except OSError as error:
        raise MinorityPromptError(
            f"could not load the {what} from {source!r}: {error}. Download it first (for "
            f"example `huggingface-cli download {source}`) or pass a local folder."
        ) from error


def load_clip(
    model_name_or_path: str | os.PathLike[str] = DEFAULT_CLIP,
    *,
    processor_name_or_path: str | os.PathLike[str] | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    local_files_only: bool = False,
) -> ImageFeatureExtractor:
    """Load a `CLIPModel` and its processor (from `processor_name_or_path` if given)."""
    from transformers import AutoProcessor, CLIPModel

    source = check_model_source(model_name_or_path)
    processor_source = check_model_source(processor_name_or_path or model_name_or_path)
    device = torch.device(device) if device is not None else default_device()
    model = load_pretrained(
        CLIPModel, source, "CLIP model", dtype=dtype, local_files_only=local_files_only
    )
    processor = load_pretrained(
        AutoProcessor, processor_source, "CLIP processor", local_files_only=local_files_only
    )
    logger.info("Loaded CLIP model %s on %s", source, device)
    return ImageFeatureExtractor("clip", model.to(device).eval(), processor, device)


def load_dino(
    model_name_or_path: str | os.PathLike[str] = DEFAULT_DINO,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    local_files_only: bool = False,
) -> ImageFeatureExtractor:
    """Load a DINO-style ViT (`AutoModel`) and its image processor."""
    from transformers import AutoConfig, AutoImageProcessor, AutoModel

    source = check_model_source(model_name_or_path)
    device = torch.device(device) if device is not None else default_device()
    config = load_pretrained(AutoConfig, source, "DINO config", local_files_only=local_files_only)
    extra = {}
    if config.model_type == "vit":
        # DINO checkpoints have no pooler weights, and only the CLS token is used.
        extra["add_pooling_layer"] = False
    model = load_pretrained(
        AutoModel, source, "DINO model", dtype=dtype, local_files_only=local_files_only, **extra
    )
    processor = load_pretrained(
        AutoImageProcessor, source, "DINO image processor", local_files_only=local_files_only
    )
    logger.info("Loaded DINO model %s on %s", source, device)
    return ImageFeatureExtractor("dino", model.to(device).eval(), processor, device)


def load_feature_extractor(
    kind: FeatureKind,
    model_name_or_path: str | os.PathLike[str] | None = None,
    **kwargs: Any,
) -> ImageFeatureExtractor:
    """Load a CLIP or DINO feature extractor; `model_name_or_path` defaults per kind."""
    if kind == "clip":
        return load_clip(model_name_or_path or DEFAULT_CLIP, **kwargs)
    if kind == "dino":
        return load_dino(model_name_or_path or DEFAULT_DINO, **kwargs)
    raise MinorityPromptError(f"feature kind {kind!r} is not supported; use 'clip' or 'dino'.")


def resolve_extractor(
    extractor: ImageFeatureExtractor | str | os.PathLike[str], kind: FeatureKind
) -> ImageFeatureExtractor:
    """Load `extractor` if it is a path or hub id, and check that it is of `kind`."""
    if not isinstance(extractor, ImageFeatureExtractor):
        return load_feature_extractor(kind, extractor)
    if extractor.kind != kind:
        raise MinorityPromptError(
            f"this metric needs a {kind!r} feature extractor, got {extractor.kind!r}."
        )
    return extractor
