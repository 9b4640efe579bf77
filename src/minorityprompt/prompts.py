"""Read prompt lists: plain text, CSV (MS-COCO captions), TSV (PartiPrompts) and JSON."""

from __future__ import annotations

import csv
import json
import logging
import random
from dataclasses import dataclass
from pathlib import Path

from .errors import MinorityPromptError

logger = logging.getLogger(__name__)

PROMPT_COLUMNS = ("prompt", "Prompt", "caption", "text")
SEED_COLUMNS = ("evaluation_seed", "seed")


@dataclass(frozen=True)
class PromptEntry:
    """A prompt with the per-prompt seed its file gives, if any."""

    text: str
    seed: int | None = None


def _from_table(path: Path, delimiter: str) -> list[PromptEntry]:
    # newline="" lets the csv module keep newlines inside quoted captions.
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle, delimiter=delimiter)
        fields = reader.fieldnames or []
        column = next((name for name in PROMPT_COLUMNS if name in fields), None)
        if column is None:
            raise MinorityPromptError(
                f"{path} has columns {fields}; a prompt column named one of {PROMPT_COLUMNS} is "
                "required."
            )
        seed_column = next((name for name in SEED_COLUMNS if name in fields), None)
        entries = []
        for row in reader:
            seed = row.get(seed_column) if seed_column else None
            entries.append(PromptEntry(row[column], int(seed) if seed not in (None, "") else None))
    return entries


def _from_json(path: Path) -> list[PromptEntry]:
    data = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(data, dict):
        lists = [value for value in data.values() if isinstance(value, list)]
        if len(lists) != 1:
            raise MinorityPromptError(
                f"{path} is a JSON object, so it must contain exactly one list of prompts."
            )
        data = lists[0]
    if not isinstance(data, list):
        raise MinorityPromptError(f"{path} must contain a JSON list of prompts.")
    entries = []
    for item in data:
        if isinstance(item, str):
            entries.append(PromptEntry(item))
        elif isinstance(item, dict) and isinstance(item.get("prompt"), str):
            entries.append(PromptEntry(item["prompt"], item.get("seed")))
        else:
            raise MinorityPromptError(
                f"{path}: every item must be a string or an object with a 'prompt' string; "
                f"got {item!r}."
            )
    return entries


def read_prompts(
    path: str | Path,
    limit: int | None = None,
    shuffle_seed: int | None = None,
) -> list[PromptEntry]:
    """Read prompts from `path`, by its suffix: `.txt`, `.csv`, `.tsv` or `.json`.

    Args:
        path: The prompt file. Text files hold one prompt a line; blank lines are skipped.
        limit: Keep the first `limit` prompts (after shuffling, if requested).
        shuffle_seed: Shuffle with this seed before `limit`, for a random subset.

    Raises:
        MinorityPromptError: The file is missing, of an unknown format, or contains no prompt.
    """
    path = Path(path)
    if not path.is_file():
        raise MinorityPromptError(f"Prompt file {str(path)!r} does not exist.")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        entries = _from_table(path, ",")
    elif suffix == ".tsv":
        entries = _from_table(path, "\t")
    elif suffix == ".json":
        entries = _from_json(path)
    elif suffix in (".txt", ""):
        lines = path.read_text(encoding="utf-8").splitlines()
        entries = [PromptEntry(line.strip()) for line in lines if line.strip()]
    else:
        raise MinorityPromptError(
            f"Unknown prompt file format {suffix!r} for {str(path)!r}; use .txt, .csv, .tsv or "
            ".json."
        )

    entries = [
        PromptEntry(entry.text.strip(), entry.seed) for entry in entries if entry.text.strip()
    ]
    if not entries:
        raise MinorityPromptError(f"Prompt file {str(path)!r} contains no prompt.")
    if shuffle_seed is not None:
        random.Random(shuffle_seed).shuffle(entries)
    if limit is not None:
        if limit < 1:
            raise MinorityPromptError(f"The prompt limit must be at least 1, got {limit}.")
        entries = entries[:limit]
    logger.info("Read %d prompts from %s", len(entries), path)
    return entries
