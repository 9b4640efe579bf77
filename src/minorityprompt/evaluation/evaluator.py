"""The computation of metrics for one group of images, with models loaded once."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..errors import MinorityPromptError
from ..metrics.features import clip_text_embeddings
from ..metrics.prdc import compute_prdc
from ..metrics.rarity import RarityResult, rarity_score
from ..metrics.reward_models import image_reward_score, pick_score
from ..metrics.similarity import InBatchSimilarityResult, in_batch_similarity
from .groups import ImageGroup
from .likelihood import LIKELIHOOD_SPACE, latent_likelihood
from .resources import EvaluationOptions, ModelCache, load_reference_features, open_images
from .selection import METRIC_COLUMNS

logger = logging.getLogger(__name__)

# Metrics computed from one pass over a group's images with image models.
IMAGE_MODEL_METRICS = ("clip_score", "prdc", "rarity", "in_batch_similarity", "pick_score",
                       "image_reward")
CHUNK_IMAGES = 256


def _rarity_values(result: RarityResult) -> tuple[dict, dict]:
    mean = result.mean
    values = {"rarity_score": None if math.isnan(mean) else mean}
    return values, {"fraction_in_manifold": result.fraction_in_manifold}


def _similarity_values(result: InBatchSimilarityResult) -> tuple[dict, dict]:
    return {"in_batch_similarity": result.mean}, {"prompts_with_pairs": len(result.per_group)}


class Evaluator:
    """Computes metrics for groups of images, loading each model once.

    Attributes:
        failed: Metrics skipped after a failure, with the error; only metrics that were not
            requested explicitly are skipped, the others raise.
    """

    def __init__(self, options: EvaluationOptions, explicit: set[str]) -> None:
        self.options = options
        self.explicit = explicit
        defaulted_sources = {
            kind for kind in ("clip", "dino", "pickscore") if getattr(options, kind) is None
        }
        self.models = ModelCache(options, local_only=lambda kind: kind in defaulted_sources)
        self.failed: dict[str, str] = {}
        self._reference: dict[str, Tensor] = {}

    def run(self, metrics: str | Sequence[str], function, *args):
        """Call `function` for `metrics`, which depend on its result.

        A `MinorityPromptError` propagates if one of them was requested explicitly. Otherwise
        they are skipped with a warning for this and every later group, and `None` returns.
        """
        names = [metrics] if isinstance(metrics, str) else list(metrics)
        if all(name in self.failed for name in names):
            return None
        try:
            return function(*args)
        except MinorityPromptError as error:
            if any(name in self.explicit for name in names):
                raise
            logger.warning("Skipping %s, which %s not requested explicitly: %s",
                           ", ".join(names), "was" if len(names) == 1 else "were", error)
            for name in names:
                self.failed[name] = str(error)
            return None

    # -- features ------------------------------------------------------------------------

    def extract(self, kind: str, paths: Sequence[Path]) -> Tensor:
        """Embed image files with the `kind` extractor, reading them in chunks."""
        extractor = self.models.extractor(kind)
        features = []
        bar = tqdm(total=len(paths), desc=f"{kind} features", unit="img",
                   disable=not self.options.progress)
        for start in range(0, len(paths), CHUNK_IMAGES):
            images = open_images(paths[start : start + CHUNK_IMAGES])
            features.append(extractor.extract(images, batch_size=self.options.batch_size))
            bar.update(len(images))
        bar.close()
        return torch.cat(features)

    def reference(self) -> Tensor:
        kind = self.options.features
        if kind not in self._reference:
            self._reference[kind] = load_reference_features(
                Path(self.options.reference).expanduser(),
                lambda files: self.extract(kind, files),
                self.options.save_reference_features,
            )
        return self._reference[kind]

    # -- metrics -------------------------------------------------------------------------

    def image_model_metrics(self, group: ImageGroup, metrics: Sequence[str]) -> dict[str, dict]:
        """Compute the metrics that need image models, in one pass over the group's images."""
        options = self.options
        need_clip = "clip_score" in metrics or (
            options.features == "clip" and ("prdc" in metrics or "rarity" in metrics)
        )
        need_dino = "in_batch_similarity" in metrics or (
            options.features == "dino" and ("prdc" in metrics or "rarity" in metrics)
        )
        feature_metrics = [name for name in ("prdc", "rarity") if name in metrics]
        clip_users = [name for name in metrics if name == "clip_score"]
        dino_users = [name for name in metrics if name == "in_batch_similarity"]
        (clip_users if options.features == "clip" else dino_users).extend(feature_metrics)
        models = {}
        if need_clip:
            models["clip"] = self.run(clip_users, self.models.extractor, "clip")
        if need_dino:
            models["dino"] = self.run(dino_users, self.models.extractor, "dino")
        if "pick_score" in metrics:
            models["pickscore"] = self.run("pick_score", self.models.pickscore)
        if "image_reward" in metrics:
            models["image_reward"] = self.run("image_reward", self.models.image_reward)

        collected: dict[str, list[Tensor]] = {name: [] for name in
                                              ("clip", "clip_text", "dino", "pick", "reward")}
        paths, prompts = group.paths, group.prompts
        bar = tqdm(total=len(paths), desc=group.label, unit="img", disable=not options.progress)
        for start in range(0, len(paths), CHUNK_IMAGES):
            images = open_images(paths[start : start + CHUNK_IMAGES])
            chunk_prompts = prompts[start : start + CHUNK_IMAGES]
            if models.get("clip") is not None:
                clip = models["clip"]
                collected["clip"].append(clip.extract(images, batch_size=options.batch_size))
                if "clip_score" in metrics:
                    collected["clip_text"].append(
                        clip_text_embeddings(clip, chunk_prompts, batch_size=options.batch_size)
                    )
            if models.get("dino") is not None:
                dino = models["dino"]
                collected["dino"].append(dino.extract(images, batch_size=options.batch_size))
            if models.get("pickscore") is not None:
                collected["pick"].append(
                    pick_score(images, chunk_prompts, models["pickscore"],
                               batch_size=options.batch_size)
                )
            if models.get("image_reward") is not None:
                collected["reward"].append(
                    image_reward_score(images, chunk_prompts, models["image_reward"])
                )
            bar.update(len(images))
        bar.close()
        features = {name: torch.cat(parts) for name, parts in collected.items() if parts}
        return self._image_model_values(metrics, features, group)

    def _image_model_values(
        self, metrics: Sequence[str], features: dict[str, Tensor], group: ImageGroup
    ) -> dict[str, dict]:
        options = self.options
        outputs: dict[str, dict] = {}
        if "clip_score" in metrics and "clip_text" in features:
            # The formula of `metrics.clip_score`: 100 x cosine, batch value max(mean, 0).
            scores = 100 * torch.nn.functional.cosine_similarity(
                features["clip"], features["clip_text"], dim=-1
            )
            mean = float(scores.mean())
            outputs["clip_score"] = {"values": {"clip_score": max(mean, 0.0)},
                                     "details": {"unclamped_mean": mean}}
        fake = features.get(options.features)
        feature_metrics = [name for name in ("prdc", "rarity") if name in metrics]
        real = self.run(feature_metrics, self.reference) if fake is not None else None
        if real is not None:
            details = {"features": options.features, "reference_images": real.shape[0]}
            if "prdc" in metrics:
                outputs["prdc"] = self._for_group(
                    "prdc", group, details | {"nearest_k": options.nearest_k},
                    lambda: (compute_prdc(real, fake, options.nearest_k).as_dict(), {}),
                )
            if "rarity" in metrics:
                outputs["rarity"] = self._for_group(
                    "rarity", group, details | {"nearest_k": options.rarity_k},
                    lambda: _rarity_values(rarity_score(real, fake, options.rarity_k)),
                )
        if "in_batch_similarity" in metrics and "dino" in features:
            outputs["in_batch_similarity"] = self._for_group(
                "in_batch_similarity", group, {},
                lambda: _similarity_values(in_batch_similarity(features["dino"], group.prompts)),
            )
        if "pick" in features:
            outputs["pick_score"] = {"values": {"pick_score": float(features["pick"].mean())},
                                     "details": {}}
        if "reward" in features:
            outputs["image_reward"] = {
                "values": {"image_reward": float(features["reward"].mean())}, "details": {}
            }
        return outputs

    def _for_group(self, metric: str, group: ImageGroup, details: dict, compute) -> dict:
        """Run `compute`, which returns `(values, details)`, for one group.

        A value that the group's images cannot define, such as PRDC of fewer than k + 1
        images, becomes `None` with a warning and leaves other groups alone.
        """
        try:
            values, extra = compute()
        except MinorityPromptError as error:
            logger.warning("%s of %s is undefined: %s", metric, group.label, error)
            values = {column: None for column in METRIC_COLUMNS[metric]}
            extra = {"error": str(error)}
        return {"values": values, "details": details | extra}

    def likelihood(self, group: ImageGroup) -> dict | None:
        options = self.options
        by_model: dict[str, list] = {}
        for record in group.records:
            model = options.model or record.model
            if model is None:
                raise MinorityPromptError(
                    f"The metadata of {record.path} names no model; pass --model for the "
                    "likelihood."
                )
            by_model.setdefault(model, []).append(record)
        log_likelihood, bits, evaluations = [], [], []
        for model, records in by_model.items():
            result = latent_likelihood(
                self.models.pipeline(model),
                [record.path for record in records],
                [record.prompt for record in records],
                options.likelihood,
                progress=options.progress,
            )
            log_likelihood.append(result["log_likelihood"])
            bits.append(result["bits_per_dim"])
            evaluations.append(result["function_evaluations"])
        return {
            "values": {"bits_per_dim": float(torch.cat(bits).mean())},
            "details": {
                "space": LIKELIHOOD_SPACE,
                "log_likelihood": float(torch.cat(log_likelihood).mean()),
                "mean_function_evaluations": float(torch.cat(evaluations).mean()),
                "models": sorted(by_model),
                "settings": options.likelihood.as_dict(),
            },
        }
