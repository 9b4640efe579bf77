"""A run folder of PNG images and `metadata.jsonl`, written so that a killed run can resume.

Each image is written to a temporary file, fsynced and renamed into place, so a PNG under
`images/` is always whole. Its metadata line is appended, flushed and fsynced only after the
rename; an image is complete when both exist. On resume, keys with a metadata line and a
readable PNG are skipped, and anything else is generated again and overwritten. Several
processes (for example under torchrun) each append to their own metadata shard, and
`merge_shards` folds the shards into `metadata.jsonl`. Readers that go through `records()`
see every complete image whether or not the shards were merged.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from PIL import Image

from .errors import MinorityPromptError

logger = logging.getLogger(__name__)

METADATA_FILE = "metadata.jsonl"
IMAGE_FOLDER = "images"


def image_key(prompt_index: int, sample_index: int, method: str) -> str:
    return f"{prompt_index:06d}-{sample_index:03d}-{method}"


def _read_lines(path: Path) -> Iterator[dict]:
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                # A process killed mid-write leaves a partial last line.
                logger.warning("Skipping unreadable line %d of %s", number, path)


def _png_is_whole(path: Path) -> bool:
    try:
        with Image.open(path) as image:
            image.load()
        return True
    except (OSError, SyntaxError):
        return False


def metadata_files(folder: Path) -> list[Path]:
    """`metadata.jsonl` first, then the shards, so that a shard's newer line wins."""
    merged = folder / METADATA_FILE
    return ([merged] if merged.is_file() else []) + sorted(folder.glob("metadata.rank*.jsonl"))


def read_records(folder: str | Path) -> list[dict]:
    """Read every metadata record of a run folder, shards included, one per key (the last).

    Reads only; unlike `RunWriter`, it creates nothing.
    """
    by_key: dict[str, dict] = {}
    for path in metadata_files(Path(folder)):
        for record in _read_lines(path):
            by_key[record["key"]] = record
    return [by_key[key] for key in sorted(by_key)]


class RunWriter:
    """Writes images and metadata of one run folder.

    Args:
        folder: The run folder; created if missing.
        rank: This process's index among `world_size` writers.
        world_size: Number of processes writing to the folder at once.
    """

    def __init__(self, folder: str | Path, rank: int = 0, world_size: int = 1) -> None:
        self.folder = Path(folder)
        self.images = self.folder / IMAGE_FOLDER
        self.images.mkdir(parents=True, exist_ok=True)
        self.rank = rank
        self.world_size = world_size
        name = METADATA_FILE if world_size == 1 else f"metadata.rank{rank}.jsonl"
        self.metadata_path = self.folder / name

    def metadata_files(self) -> list[Path]:
        return metadata_files(self.folder)

    def shard_files(self) -> list[Path]:
        return sorted(self.folder.glob("metadata.rank*.jsonl"))

    def records(self) -> list[dict]:
        """Every metadata record in the folder, shards included, one per key (the last)."""
        return read_records(self.folder)

    def completed_keys(self) -> set[str]:
        """Keys whose metadata line exists and whose PNG is whole."""
        done = set()
        for record in self.records():
            if _png_is_whole(self.folder / record["file"]):
                done.add(record["key"])
        return done

    def write(self, key: str, image: Image.Image, metadata: dict) -> Path:
        """Write `image` as `images/<key>.png`, then append its metadata line."""
        if not isinstance(image, Image.Image):
            raise MinorityPromptError(
                f"Expected a PIL image for {key!r}, got {type(image).__name__}."
            )
        target = self.images / f"{key}.png"
        temporary = self.images / f".{key}.png.{os.getpid()}.tmp"
        with temporary.open("wb") as handle:
            image.save(handle, format="PNG")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)

        record = {"key": key, "file": f"{IMAGE_FOLDER}/{target.name}", **metadata}
        line = json.dumps(record, ensure_ascii=False)
        with self.metadata_path.open("a+", encoding="utf-8") as handle:
            # Start on a fresh line if a killed process left a partial one.
            handle.seek(0, os.SEEK_END)
            if handle.tell() > 0:
                handle.seek(handle.tell() - 1)
                if handle.read(1) != "\n":
                    handle.write("\n")
            handle.write(line + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        return target

    def compact(self) -> None:
        """Rewrite this writer's metadata file with one line per key whose PNG is whole.

        Run before resuming, so that lines of images lost in a crash, and repeated lines,
        disappear. A single writer (`world_size == 1`) also folds in the shards that a killed
        multi-process run left, so that `metadata.jsonl` alone lists every complete image.
        """
        if self.world_size == 1 and self.shard_files():
            self.merge_shards()
            return
        if not self.metadata_path.is_file():
            return
        by_key: dict[str, dict] = {}
        for record in _read_lines(self.metadata_path):
            by_key[record["key"]] = record
        kept = [
            by_key[key]
            for key in sorted(by_key)
            if _png_is_whole(self.folder / by_key[key]["file"])
        ]
        self._rewrite(self.metadata_path, kept)

    def _rewrite(self, path: Path, records: list[dict]) -> None:
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with temporary.open("w", encoding="utf-8") as handle:
            for record in records:
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)

    def remove_temporary_files(self, keys: Iterable[str] | None = None) -> None:
        """Delete temporary PNGs that a killed process left, of `keys` only if given.

        Processes that share the folder pass their own keys, because a temporary file of
        another key may belong to a process that is writing it right now.
        """
        wanted = None if keys is None else set(keys)
        for leftover in self.images.glob(".*.png.*.tmp"):
            # Temporary names are ".<key>.png.<pid>.tmp".
            key = leftover.name[1:].rsplit(".png.", 1)[0]
            if wanted is None or key in wanted:
                leftover.unlink(missing_ok=True)

    def write_json(self, name: str, data: dict) -> Path:
        """Write `data` as the JSON file `name` in the run folder, atomically."""
        path = self.folder / name
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        temporary.write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")
        os.replace(temporary, path)
        return path

    def merge_shards(self) -> Path:
        """Fold every shard into `metadata.jsonl`, one line per complete image, sorted by key."""
        records = [
            record for record in self.records() if _png_is_whole(self.folder / record["file"])
        ]
        merged = self.folder / METADATA_FILE
        self._rewrite(merged, records)
        # A crash between the rewrite and these deletions leaves lines in both places;
        # `records()` keeps one per key, and the next merge removes the shards.
        for shard in self.shard_files():
            shard.unlink()
        return merged
