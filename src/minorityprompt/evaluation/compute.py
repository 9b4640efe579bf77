"""Compute the chosen metrics for every group of generated images."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import MinorityPromptError
from .evaluator import IMAGE_MODEL_METRICS, Evaluator
from .groups import ImageGroup, find_run_folders, group_records, load_records
from .resources import EvaluationOptions, model_is_local, reference_fingerprint
from .selection import METRIC_COLUMNS, METRICS, image_reward_is_available

logger = logging.getLogger(__name__)


@dataclass
class GroupResult:
    """Metric values of one group.

    Attributes:
        values: Column name to value; `None` where the metric failed or is undefined.
        details: Per metric, what else it reported (settings, counts, unclamped means).
        fingerprints: Per metric, the hash of images and settings that its value belongs to.
    """

    group: ImageGroup
    values: dict[str, float | None] = field(default_factory=dict)
    details: dict[str, dict] = field(default_factory=dict)
    fingerprints: dict[str, str] = field(default_factory=dict)


@dataclass
class Evaluation:
    """The outcome of `evaluate_runs`: one result per group and what was left out."""

    folders: list[Path]
    metrics: list[str]
    results: list[GroupResult]
    skipped: dict[str, str]
    options: EvaluationOptions


def _has_pairs(groups: Sequence[ImageGroup]) -> bool:
    for group in groups:
        prompts = group.prompts
        if len(set(prompts)) < len(prompts):
            return True
    return False


def choose_metrics(
    options: EvaluationOptions, groups: Sequence[ImageGroup], required: Sequence[str] = ()
) -> tuple[list[str], dict[str, str], set[str]]:
    """Return `(metrics, skipped, explicit)`.

    Explicit metrics (`options.metrics` and `required`) always run, and a missing input is an
    error. Without `options.metrics`, every other metric runs when its inputs are present,
    and `skipped` gives the reason for each one that is not.
    """
    explicit = set(options.metrics or ()) | set(required)
    for name in ("prdc", "rarity"):
        if name in explicit and options.reference is None:
            raise MinorityPromptError(
                f"{name} compares with real images; pass --reference with a folder of real "
                "images or a .npy/.pt file of their features."
            )
    if options.metrics is not None:
        chosen = [name for name in METRICS if name in explicit]
        return chosen, {}, explicit

    feature_kind = options.features
    reasons: dict[str, str] = {}
    if not options.on_disk("clip"):
        reasons["clip_score"] = (
            f"CLIP {options.source('clip')!r} is not on disk; download it or pass --clip PATH"
        )
    for name in ("prdc", "rarity"):
        if options.reference is None:
            reasons[name] = "no --reference (real images or a feature file) was given"
        elif not options.on_disk(feature_kind):
            reasons[name] = (
                f"the {feature_kind} model {options.source(feature_kind)!r} is not on disk; "
                f"pass --{feature_kind} PATH"
            )
    if not _has_pairs(groups):
        reasons["in_batch_similarity"] = (
            "no prompt has 2 or more images; generate with --images-per-prompt 2 or more"
        )
    elif not options.on_disk("dino"):
        reasons["in_batch_similarity"] = (
            f"DINO {options.source('dino')!r} is not on disk; download it or pass --dino PATH"
        )
    models = {options.model} if options.model else {
        record.model for group in groups for record in group.records
    }
    if None in models:
        reasons["likelihood"] = "the run metadata names no model; pass --model"
    elif not options.model and not all(model_is_local(model) for model in models):
        reasons["likelihood"] = (
            f"model {sorted(models)} is not on disk; pass --model PATH or --metrics likelihood "
            "to download it"
        )
    if not (options.on_disk("pickscore") and options.on_disk("pickscore_processor")):
        reasons["pick_score"] = (
            f"PickScore {options.source('pickscore')!r} with processor "
            f"{options.source('pickscore_processor')!r} is not on disk; pass --pickscore PATH"
        )
    if not image_reward_is_available(options.source("image_reward")):
        reasons["image_reward"] = (
            "the ImageReward package or its checkpoint is missing; install image-reward and "
            "pass --image-reward PATH"
        )
    for name in explicit:
        reasons.pop(name, None)
    chosen = [name for name in METRICS if name not in reasons]
    return chosen, reasons, explicit


def _metric_settings(name: str, options: EvaluationOptions, reference_hash: str | None) -> dict:
    if name == "clip_score":
        return {"clip": options.source("clip")}
    if name in ("prdc", "rarity"):
        k = options.nearest_k if name == "prdc" else options.rarity_k
        return {
            "features": options.features,
            "extractor": options.source(options.features),
            "reference_hash": reference_hash,
            "nearest_k": k,
        }
    if name == "in_batch_similarity":
        return {"dino": options.source("dino")}
    if name == "pick_score":
        return {"model": options.source("pickscore"),
                "processor": options.source("pickscore_processor")}
    if name == "image_reward":
        return {"model": options.source("image_reward")}
    return {"model": options.model, "dtype": options.dtype or "float32",
            "settings": options.likelihood.as_dict()}


def _fingerprint(group_hash: str, settings: dict) -> str:
    text = group_hash + json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _stored_results(path: Path) -> dict[str, dict]:
    """Per group key, the `metrics` entries of an earlier `evaluation.json`."""
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return {group["key"]: group.get("metrics", {}) for group in data.get("groups", [])}
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as error:
        logger.warning("Ignoring the unreadable earlier results %s: %s", path, error)
        return {}


def evaluate_runs(
    paths: Sequence[str | Path],
    options: EvaluationOptions | None = None,
    stored: str | Path | None = None,
    required: Sequence[str] = (),
) -> Evaluation:
    """Evaluate the images of `generate` runs, one result per method and sweep point.

    Args:
        paths: Run folders, or folders that contain run folders (a sweep).
        options: Metrics, models and settings; the defaults pick every metric whose inputs
            are present.
        stored: An earlier `evaluation.json`, whose values are reused for groups and
            metrics whose images and settings are unchanged (unless `options.recompute`).
        required: Metrics to compute in any case, such as the axes of a plot.
    """
    options = options or EvaluationOptions()
    folders = find_run_folders(paths)
    records = [record for folder in folders for record in load_records(folder)]
    if not records:
        raise MinorityPromptError(
            f"The run folders {[str(folder) for folder in folders]} list no image; generate "
            "images first."
        )
    groups = group_records(records)
    metrics, skipped, explicit = choose_metrics(options, groups, required)
    if not metrics:
        raise MinorityPromptError(
            "No metric can run with the given inputs: "
            + "; ".join(f"{name}: {reason}" for name, reason in skipped.items())
            + ". Pass model paths (--clip, --dino, ...) or name metrics with --metrics."
        )
    for name, reason in skipped.items():
        logger.info("Not computing %s: %s", name, reason)

    evaluator = Evaluator(options, explicit)
    earlier = {} if options.recompute or stored is None else _stored_results(Path(stored))
    reference_hash = None
    if options.reference is not None and ("prdc" in metrics or "rarity" in metrics):
        reference_hash = reference_fingerprint(Path(options.reference).expanduser())

    results = []
    for group in groups:
        result = GroupResult(group)
        group_hash = group.fingerprint()
        stored_metrics = earlier.get(group.key, {})
        todo = []
        for name in metrics:
            settings = _metric_settings(name, options, reference_hash)
            result.fingerprints[name] = _fingerprint(group_hash, settings)
            previous = stored_metrics.get(name)
            if previous and previous.get("fingerprint") == result.fingerprints[name]:
                result.values.update(previous["values"])
                result.details[name] = previous.get("details", {})
            else:
                todo.append(name)
        if todo:
            logger.info("Computing %s for %s (%d images)", ", ".join(todo), group.label,
                        len(group.records))
        outputs = {}
        image_metrics = [name for name in todo if name in IMAGE_MODEL_METRICS]
        if image_metrics:
            outputs.update(evaluator.image_model_metrics(group, image_metrics))
        if "likelihood" in todo:
            output = evaluator.run("likelihood", evaluator.likelihood, group)
            if output is not None:
                outputs["likelihood"] = output
        for name, output in outputs.items():
            result.values.update(output["values"])
            result.details[name] = output["details"]
        for name in todo:
            for column in METRIC_COLUMNS[name]:
                result.values.setdefault(column, None)
        results.append(result)

    for name, reason in evaluator.failed.items():
        skipped[name] = reason
    ran = [name for name in metrics if name not in evaluator.failed]
    return Evaluation(folders, ran, results, skipped, options)
