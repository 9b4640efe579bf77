"""Killed and resumed `generate` runs, in one process and in two torchrun processes on CPU.

A run is killed with SIGKILL while it writes images. The resumed run must leave every image
exactly once and whole, with one metadata line each, and equal to an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
from PIL import Image

from minorityprompt.cli.main import main
from minorityprompt.outputs import RunWriter
from minorityprompt.prompts import read_prompts

GENERATE = ["--model", "tiny-sd15", "--method", "ddim", "--steps", "4", "--batch-size", "1",
            "--file-seeds", "--no-progress"]
KILL_TIMEOUT_S = 240
RESUME_TIMEOUT_S = 300


def subprocess_env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    src = str(Path(__file__).resolve().parents[1] / "src")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [src, env.get("PYTHONPATH")]))
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def torchrun(arguments: list[str]) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
            "--master_addr", "127.0.0.1", "--master_port", str(free_port()),
            "-m", "minorityprompt.cli.main", *arguments]


def pngs(out: Path) -> list[Path]:
    return sorted((out / "images").glob("*.png")) if (out / "images").is_dir() else []


def kill_when(command: list[str], ready, log: Path) -> None:
    """Start `command` and SIGKILL it and every process it started once `ready()` is true.

    torchrun starts its workers in sessions of their own, so killing its process group
    would leave them running.
    """
    with log.open("w") as handle:
        process = subprocess.Popen(command, env=subprocess_env(), stdout=handle,
                                   stderr=subprocess.STDOUT)
        deadline = time.monotonic() + KILL_TIMEOUT_S
        try:
            while not ready():
                assert process.poll() is None, (
                    f"the run ended (code {process.returncode}) before it could be killed:\n"
                    f"{log.read_text()[-3000:]}"
                )
                assert time.monotonic() < deadline, "no image appeared in time"
                time.sleep(0.02)
        finally:
            started = psutil.Process(process.pid).children(recursive=True)
            for child in [psutil.Process(process.pid), *started]:
                with contextlib.suppress(psutil.NoSuchProcess):
                    child.send_signal(signal.SIGKILL)
            process.wait()
            psutil.wait_procs(started, timeout=30)


def damage_run(out: Path, victim: Path) -> None:
    """Leave what a crash or a bad disk can leave: `victim` cut in half, a temporary file and
    a partial metadata line."""
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2])
    (out / "images" / ".000039-000-ddim.png.99999.tmp").write_bytes(data[:10])
    metadata = sorted(out.glob("metadata*.jsonl"))[-1]
    with metadata.open("a") as handle:
        handle.write('{"key": "000038-000-ddim", "file": "images/0000')


def finish_rank_zero(out: Path, reference: Path) -> None:
    """Give rank 0 all its images, as if it had finished before the kill, so the resumed
    rank 0 reaches the final barrier long before rank 1."""
    lines = (reference / "metadata.jsonl").read_text().splitlines()
    even = [line for line in lines if int(json.loads(line)["key"][:6]) % 2 == 0]
    for line in even:
        name = json.loads(line)["file"]
        shutil.copy2(reference / name, out / name)
    with (out / "metadata.rank0.jsonl").open("a") as handle:
        handle.write("\n" + "\n".join(even) + "\n")


def check_run(out: Path, reference: Path, entries) -> None:
    """Every image once, whole and equal to the reference; metadata.jsonl matches the files."""
    expected = [f"{index:06d}-000-ddim" for index in range(len(entries))]
    files = pngs(out)
    assert [path.stem for path in files] == expected
    assert not list((out / "images").glob(".*"))
    assert not list(out.glob("metadata.rank*.jsonl"))
    for path in files:
        with Image.open(path) as image:
            image.load()
            assert image.size == (32, 32)
        again = np.asarray(Image.open(reference / "images" / path.name)).astype(int)
        assert np.abs(np.asarray(Image.open(path)).astype(int) - again).max() <= 1, path.name

    lines = (out / "metadata.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    # A resumed single process appends regenerated images after the kept lines, so the
    # order is not the key order.
    records.sort(key=lambda record: record["key"])
    assert [record["key"] for record in records] == expected
    for record, entry in zip(records, entries, strict=True):
        assert (out / record["file"]).is_file()
        assert record["prompt"] == entry.text
        assert record["seed"] == entry.seed


@pytest.fixture(scope="module")
def coco_entries(prompt_files):
    return read_prompts(prompt_files["coco"], limit=40)


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory, prompt_files):
    out = tmp_path_factory.mktemp("reference") / "run"
    assert main(["generate", "--prompts", str(prompt_files["coco"]), "--limit", "40",
                 "--out", str(out), *GENERATE]) == 0
    return out


def test_temporary_files_of_other_keys_survive(tmp_path):
    writer = RunWriter(tmp_path, rank=0, world_size=2)
    mine = writer.images / ".000000-000-ddim.png.11.tmp"
    theirs = writer.images / ".000001-000-ddim.png.12.tmp"
    mine.write_bytes(b"x")
    theirs.write_bytes(b"x")
    writer.remove_temporary_files(["000000-000-ddim"])
    assert not mine.exists()
    assert theirs.exists()


def test_single_writer_folds_leftover_shards(tmp_path):
    image = Image.new("RGB", (8, 8), "red")
    for rank in (0, 1):
        RunWriter(tmp_path, rank, 2).write(f"00000{rank}-000-ddim", image, {"prompt": "a"})
    writer = RunWriter(tmp_path)
    writer.compact()
    assert not list(tmp_path.glob("metadata.rank*.jsonl"))
    lines = (tmp_path / "metadata.jsonl").read_text().splitlines()
    assert [json.loads(line)["key"] for line in lines] == ["000000-000-ddim", "000001-000-ddim"]


def test_killed_run_resumes(tmp_path, prompt_files, coco_entries, reference_run):
    out = tmp_path / "run"
    arguments = ["generate", "--prompts", str(prompt_files["coco"]), "--limit", "40",
                 "--out", str(out), *GENERATE]
    kill_when([sys.executable, "-m", "minorityprompt.cli.main", *arguments],
              lambda: len(pngs(out)) >= 3, tmp_path / "killed.log")
    written = len(pngs(out))
    assert 3 <= written < 40
    damage_run(out, pngs(out)[0])

    assert main(arguments) == 0
    check_run(out, reference_run, coco_entries)


@pytest.mark.slow
def test_two_processes_shard_and_resume(tmp_path, prompt_files, coco_entries, reference_run):
    out = tmp_path / "run"
    arguments = ["generate", "--prompts", str(prompt_files["coco"]), "--limit", "40",
                 "--out", str(out), *GENERATE]

    def both_ranks_wrote() -> bool:
        shards = list(out.glob("metadata.rank*.jsonl"))
        return len(shards) == 2 and len(pngs(out)) >= 4

    kill_when(torchrun(arguments), both_ranks_wrote, tmp_path / "killed.log")
    assert len(pngs(out)) < 40
    # Rank r takes the jobs whose index modulo 2 is r; job i is prompt i here.
    for rank in (0, 1):
        keys = [json.loads(line)["key"] for line in
                (out / f"metadata.rank{rank}.jsonl").read_text().splitlines() if line.strip()]
        assert keys
        assert all(int(key[:6]) % 2 == rank for key in keys)
    finish_rank_zero(out, reference_run)
    damage_run(out, next(path for path in pngs(out) if int(path.stem[:6]) % 2 == 1))

    result = subprocess.run(torchrun(arguments), env=subprocess_env(), capture_output=True,
                            text=True, timeout=RESUME_TIMEOUT_S)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    # Rank 0 merges only after rank 1 has written its last image.
    assert "Wrote 40 of 40 images" in result.stdout
    assert "0 generated by this process" in result.stdout
    check_run(out, reference_run, coco_entries)
