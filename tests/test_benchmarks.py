"""The benchmark scripts run end to end (slow: they sample real models)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_script(*arguments: str) -> str:
    completed = subprocess.run(
        [sys.executable, *arguments], cwd=ROOT, capture_output=True, text=True, timeout=1200,
        env={**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")},
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    return completed.stdout.strip().splitlines()[-1]


@pytest.mark.slow
def test_longtail_quick_mode(tmp_path):
    last = run_script("benchmarks/longtail.py", "--quick", "--samples", "2", "--steps", "10",
                      "--out", str(tmp_path))
    assert re.fullmatch(r"rare_rate_ratio=(\d+\.\d+|inf) text_accuracy_ratio=\d+\.\d+", last)
    assert (tmp_path / "longtail-quick.json").is_file()
    assert (tmp_path / "longtail-quick.md").is_file()
    assert (tmp_path / "longtail-quick.png").is_file()


@pytest.mark.slow
def test_speed_benchmark_line():
    last = run_script("benchmarks/speed.py", "--model", "tiny-sd15", "--steps", "3",
                      "--repeats", "1", "--batch-size", "1")
    assert re.fullmatch(r"time_ratio=\d+\.\d+ memory_ratio=\d+\.\d+", last)
