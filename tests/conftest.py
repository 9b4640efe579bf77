"""Shared fixtures: tiny pipelines (built once per session) and the real prompt files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

# Tiny models gain nothing from many threads; OMP_NUM_THREADS overrides the default of 2.
torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS") or min(2, os.cpu_count() or 1)))

SHARED = Path(
    os.environ.get("MINORITYPROMPT_SHARED", Path(__file__).resolve().parents[2] / "shared")
)


@pytest.fixture(scope="session")
def prompt_files() -> dict[str, Path]:
    """The real prompt sets: MS-COCO captions (CSV), PartiPrompts (TSV), professions (JSON)."""
    folder = SHARED / "data" / "prompts"
    files = {
        "coco": folder / "coco30k" / "coco_30k.csv",
        "parti": folder / "partiprompts" / "PartiPrompts.tsv",
        "professions": folder / "professions" / "dalleval_neutral_prompts_profession.json",
        "professions_list": folder / "professions" / "dalleval_prompt_list.json",
    }
    missing = [str(path) for path in files.values() if not path.is_file()]
    assert not missing, f"prompt files not found (set MINORITYPROMPT_SHARED): {missing}"
    return files


_PIPELINES: dict[str, object] = {}


def tiny(family: str):
    """A tiny pipeline of `family`, built once per session; tests must not modify it."""
    from minorityprompt.testing import tiny_sd_pipeline

    if family not in _PIPELINES:
        _PIPELINES[family] = tiny_sd_pipeline(family)
    return _PIPELINES[family]


@pytest.fixture(params=["sd15", "sd2", "sdxl"])
def family(request) -> str:
    return request.param


@pytest.fixture
def pipe(family):
    return tiny(family)
