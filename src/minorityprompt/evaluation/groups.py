"""Find the images of `generate` run folders and group them by method and sweep point."""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import MinorityPromptError
from ..outputs import METADATA_FILE, read_records

logger = logging.getLogger(__name__)

METHOD_LABELS = {
    "ddim": "DDIM",
    "minority": "MinorityPrompt",
    "sgms": "SGMS",
    "cads": "CADS",
    "null-prompt": "Null prompt",
    "diversity": "Diversity",
}


@dataclass(frozen=True)
class ImageRecord:
    """One generated image and the metadata fields that evaluation uses.

    Attributes:
        prompt: The user's prompt, as `generate` received it; metrics score this text.
        model: The `--model` of the run, for the likelihood.
        sweep_point: `{"parameter", "value", "label"}` for images of a `sweep` point.
        size: `(height, width)` of the run in pixels, if recorded.
    """

    path: Path
    key: str
    prompt: str
    method: str
    folder: Path
    model: str | None
    sweep_point: dict | None
    size: tuple[int, int] | None


@dataclass
class ImageGroup:
    """The images of one method at one sweep point, one row of the evaluation table."""

    method: str
    sweep_point: dict | None
    folders: list[Path]
    records: list[ImageRecord] = field(default_factory=list)
    folder_label: str | None = None

    @property
    def label(self) -> str:
        text = METHOD_LABELS.get(self.method, self.method)
        if self.sweep_point is not None:
            text += f" ({self.sweep_point['label']})"
        if self.folder_label:
            text += f" [{self.folder_label}]"
        return text

    @property
    def key(self) -> str:
        """A stable id of the group, stored in `evaluation.json`."""
        parts = [self.method]
        if self.sweep_point is not None:
            parts.append(self.sweep_point["label"])
        if self.folder_label:
            parts.append(self.folder_label)
        return "|".join(parts)

    @property
    def prompts(self) -> list[str]:
        return [record.prompt for record in self.records]

    @property
    def paths(self) -> list[Path]:
        return [record.path for record in self.records]

    def fingerprint(self) -> str:
        """Hash the group's images (run folder name, key, size, modification time) and
        prompts.

        A stored metric value is reused only while the fingerprint is unchanged. Moving or
        copying run folders with their modification times keeps it.
        """
        digest = hashlib.sha256()
        for record in sorted(self.records, key=lambda item: (item.folder.name, item.key)):
            stat = record.path.stat()
            digest.update(
                f"{record.folder.name}/{record.key}|{stat.st_size}|{stat.st_mtime_ns}|".encode()
            )
            digest.update(record.prompt.encode())
        return digest.hexdigest()

    def sweep_value(self) -> float:
        """Return the sweep point's value as a number, NaN without a numeric sweep point."""
        if self.sweep_point is None:
            return math.nan
        try:
            return float(self.sweep_point["value"])
        except (TypeError, ValueError):
            return math.nan


def find_run_folders(paths: Sequence[str | Path]) -> list[Path]:
    """Return the run folders in `paths`: each path itself if it contains metadata, else the
    folders below it that do (a sweep folder contains one run per sweep point)."""
    folders: list[Path] = []
    for given in paths:
        path = Path(given).expanduser()
        if not path.is_dir():
            raise MinorityPromptError(
                f"Run folder {str(path)!r} does not exist; pass a folder written by "
                "`minorityprompt generate` or `minorityprompt sweep`."
            )
        if _holds_metadata(path):
            found = [path]
        else:
            found = sorted({metadata.parent for metadata in path.rglob("metadata*.jsonl")})
        if not found:
            raise MinorityPromptError(
                f"No run folder found in {str(path)!r}: it has no {METADATA_FILE}, and no "
                "folder below it has one. Pass a folder written by `minorityprompt generate`."
            )
        folders.extend(folder.resolve() for folder in found)
    unique = list(dict.fromkeys(folders))
    return unique


def _holds_metadata(folder: Path) -> bool:
    return (folder / METADATA_FILE).is_file() or any(folder.glob("metadata.rank*.jsonl"))


def load_records(folder: Path) -> list[ImageRecord]:
    """Read a run folder's metadata; images whose PNG is missing are skipped with a warning."""
    records = []
    missing = 0
    for raw in read_records(folder):
        path = folder / raw["file"]
        if not path.is_file():
            missing += 1
            continue
        height, width = raw.get("height"), raw.get("width")
        records.append(
            ImageRecord(
                path=path,
                key=raw["key"],
                prompt=raw["prompt"],
                method=raw.get("method", "unknown"),
                folder=folder,
                model=raw.get("model"),
                sweep_point=raw.get("sweep_point"),
                size=(int(height), int(width)) if height and width else None,
            )
        )
    if missing:
        logger.warning("%d images listed in %s are missing and left out", missing, folder)
    return records


def group_records(records: Iterable[ImageRecord]) -> list[ImageGroup]:
    """Group images by method and sweep point.

    Images without a sweep point are grouped by method and run folder. When one method has
    such groups in several folders, each gets the folder's name as a suffix, so runs with
    different settings never mix.
    """
    groups: dict[tuple, ImageGroup] = {}
    for record in records:
        if record.sweep_point is not None:
            identity = ("sweep", record.method, json.dumps(record.sweep_point, sort_keys=True))
        else:
            identity = ("run", record.method, str(record.folder))
        group = groups.get(identity)
        if group is None:
            group = ImageGroup(record.method, record.sweep_point, [])
            groups[identity] = group
        if record.folder not in group.folders:
            group.folders.append(record.folder)
        group.records.append(record)

    plain_by_method: dict[str, list[ImageGroup]] = {}
    for identity, group in groups.items():
        if identity[0] == "run":
            plain_by_method.setdefault(group.method, []).append(group)
    for same_method in plain_by_method.values():
        if len(same_method) > 1:
            for group in same_method:
                group.folder_label = group.folders[0].name

    return sorted(groups.values(), key=_group_order)


def _group_order(group: ImageGroup) -> tuple:
    methods = list(METHOD_LABELS)
    rank = methods.index(group.method) if group.method in methods else len(methods)
    parameter = group.sweep_point["parameter"] if group.sweep_point else ""
    value = group.sweep_value()
    return (rank, group.method, parameter, math.isnan(value), value, group.folder_label or "")
