"""Per-sample random streams derived from the sample's seed."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch


def derived_seed(seed: int, purpose: str) -> int:
    """Derive a seed for `purpose` (such as "objective-noise") that depends only on `seed`."""
    digest = hashlib.sha256(f"{int(seed)}:{purpose}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def generators_for(
    seeds: Sequence[int], purpose: str | None = None, device: torch.device | str = "cpu"
) -> list[torch.Generator]:
    """One generator per seed; `purpose=None` seeds with the seed itself, as diffusers users do."""
    generators = []
    for seed in seeds:
        value = int(seed) if purpose is None else derived_seed(seed, purpose)
        generators.append(torch.Generator(device=device).manual_seed(value))
    return generators
