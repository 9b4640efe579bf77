"""`minorityprompt evaluate` on a run generated from real prompts with a tiny model, scored
with tiny random CLIP and DINO models saved offline."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny
from PIL import Image

from minorityprompt.cli.main import main
from minorityprompt.evaluation import evaluator as evaluation_evaluator
from minorityprompt.evaluation import latent_likelihood
from minorityprompt.evaluation.groups import ImageRecord, group_records
from minorityprompt.evaluation.likelihood import LikelihoodSettings, encode_latents
from minorityprompt.metrics.clip_score import clip_score
from minorityprompt.metrics.features import load_clip, load_dino
from minorityprompt.metrics.prdc import compute_prdc
from minorityprompt.metrics.similarity import in_batch_similarity_of_images
from minorityprompt.prompts import read_prompts
from minorityprompt.testing_metrics import save_tiny_clip, save_tiny_dino

FAST_LIKELIHOOD = ["--likelihood-method", "rk4", "--likelihood-steps", "2",
                   "--likelihood-probes", "2"]
HEADER = ("| Method | Images | CLIPScore ↑ | Precision ↑ | Recall ↑ | Density ↑ | Coverage ↑ | "
          "Rarity ↑ | In-Batch Sim. ↓ | Latent bits/dim ↑ |")


def run_main(arguments: list[str]) -> tuple[int, str]:
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = main(arguments)
    return code, stdout.getvalue()


def group_images(run: Path, method: str) -> tuple[list[Image.Image], list[str]]:
    lines = (run / "metadata.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    records = [record for record in records if record["method"] == method]
    images = [Image.open(run / record["file"]).convert("RGB") for record in records]
    return images, [record["prompt"] for record in records]


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("metric-models")
    return {"clip": save_tiny_clip(folder / "clip"), "dino": save_tiny_dino(folder / "dino")}


@pytest.fixture(scope="module")
def coco_run(tmp_path_factory, prompt_files) -> Path:
    out = tmp_path_factory.mktemp("coco") / "run"
    code, _ = run_main(["generate", "--model", "tiny-sd15", "--prompts", str(prompt_files["coco"]),
                        "--limit", "6", "--file-seeds", "--compare", "--images-per-prompt", "2",
                        "--steps", "3", "--batch-size", "12", "--no-progress", "--out", str(out)])
    assert code == 0
    return out


@pytest.fixture(scope="module")
def evaluated(coco_run, models) -> tuple[Path, str]:
    """The run evaluated once with every metric the offline models allow."""
    features = coco_run.parent / "reference.npy"
    code, stdout = run_main([
        "evaluate", str(coco_run), "--clip", str(models["clip"]), "--dino", str(models["dino"]),
        "--reference", str(coco_run), "--save-reference-features", str(features),
        "--plot", "clip_score,likelihood", "--no-progress", *FAST_LIKELIHOOD,
    ])
    assert code == 0
    return coco_run, stdout


def test_table_is_printed_and_written(evaluated):
    run, stdout = evaluated
    assert HEADER in stdout
    assert re.search(r"^\| DDIM \| 12 \|", stdout, re.MULTILINE)
    assert re.search(r"^\| MinorityPrompt \| 12 \|", stdout, re.MULTILINE)
    assert "It is the latent likelihood, not the pixel likelihood." in stdout
    assert "Not computed: pick_score" in stdout
    markdown = (run / "evaluation.md").read_text()
    table = [line for line in stdout.splitlines() if line.startswith("|")]
    assert "\n".join(table) in markdown
    with Image.open(run / "tradeoff.png") as plot:
        plot.load()
        assert plot.size[0] > 300


def test_json_states_directions_and_space(evaluated):
    run, _ = evaluated
    data = json.loads((run / "evaluation.json").read_text())
    assert data["metrics"] == ["clip_score", "prdc", "rarity", "in_batch_similarity",
                               "likelihood"]
    assert data["likelihood"]["space"] == "latent"
    assert data["columns"]["in_batch_similarity"]["better"] == "lower"
    assert data["columns"]["bits_per_dim"]["better"] == "higher"
    assert [group["label"] for group in data["groups"]] == ["DDIM", "MinorityPrompt"]
    for group in data["groups"]:
        assert group["images"] == 12
        assert group["prompts"] == 6
        assert all(math.isfinite(value) for value in group["values"].values())
        assert group["metrics"]["likelihood"]["details"]["space"] == "latent"


def test_values_match_the_metric_functions(evaluated, models, prompt_files):
    run, _ = evaluated
    data = json.loads((run / "evaluation.json").read_text())
    values = {group["method"]: group["values"] for group in data["groups"]}
    clip, dino = load_clip(models["clip"], device="cpu"), load_dino(models["dino"], device="cpu")
    coco = [entry.text for entry in read_prompts(prompt_files["coco"], limit=6)]
    reference = torch.cat([clip.extract(group_images(run, method)[0]) for method in
                           ("ddim", "minority")])
    for method in ("ddim", "minority"):
        images, prompts = group_images(run, method)
        # Metrics score the user's prompts from the metadata.
        assert sorted(set(prompts)) == sorted(coco)
        expected_clip = clip_score(images, prompts, clip).mean
        assert values[method]["clip_score"] == pytest.approx(expected_clip, abs=1e-4)
        expected_similarity = in_batch_similarity_of_images(images, prompts, dino).mean
        assert values[method]["in_batch_similarity"] == pytest.approx(expected_similarity,
                                                                      abs=1e-5)
        prdc = compute_prdc(reference, clip.extract(images), nearest_k=5)
        assert values[method]["precision"] == pytest.approx(prdc.precision)
        assert values[method]["density"] == pytest.approx(prdc.density)
        assert values[method]["coverage"] == pytest.approx(prdc.coverage)


def test_saved_reference_features_give_same_values(evaluated, models, tmp_path):
    run, _ = evaluated
    features = run.parent / "reference.npy"
    assert np.load(features).shape == (24, 16)
    code, _ = run_main(["evaluate", str(run), "--out", str(tmp_path), "--metrics", "prdc,rarity",
                        "--clip", str(models["clip"]), "--reference", str(features),
                        "--no-progress"])
    assert code == 0
    first = json.loads((run / "evaluation.json").read_text())["groups"]
    second = json.loads((tmp_path / "evaluation.json").read_text())["groups"]
    for before, after in zip(first, second, strict=True):
        for column in ("precision", "recall", "density", "coverage", "rarity_score"):
            assert after["values"][column] == pytest.approx(before["values"][column])


def test_rerun_reuses_stored_values(evaluated, models, tmp_path, monkeypatch):
    run, _ = evaluated
    copy = tmp_path / run.name
    shutil.copytree(run, copy)

    def fail(*args, **kwargs):
        raise RuntimeError("recomputed although nothing changed")

    monkeypatch.setattr(evaluation_evaluator.Evaluator, "image_model_metrics", fail)
    monkeypatch.setattr(evaluation_evaluator, "latent_likelihood", fail)
    arguments = ["evaluate", str(copy), "--clip", str(models["clip"]), "--dino",
                 str(models["dino"]), "--reference", str(copy), "--no-progress",
                 *FAST_LIKELIHOOD]
    # The reference folder is the copied run, whose images keep their times.
    code, stdout = run_main(arguments)
    assert code == 0
    before = json.loads((run / "evaluation.json").read_text())["groups"]
    after = json.loads((copy / "evaluation.json").read_text())["groups"]
    assert [group["values"] for group in after] == [group["values"] for group in before]

    changed = sorted((copy / "images").glob("*-minority.png"))[0]
    os.utime(changed, ns=(changed.stat().st_atime_ns, changed.stat().st_mtime_ns + 10**9))
    with pytest.raises(RuntimeError, match="recomputed"):
        run_main(arguments)


def test_default_metrics_skip_missing_weights(coco_run, tmp_path, monkeypatch, caplog):
    import huggingface_hub.constants

    # A cache with CLIP's config but no weights, so CLIP looks present and then fails to load.
    snapshot = tmp_path / "hub" / "models--openai--clip-vit-large-patch14" / "snapshots" / "0"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    refs = snapshot.parents[1] / "refs"
    refs.mkdir()
    (refs / "main").write_text("0")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))

    with caplog.at_level(logging.WARNING, logger="minorityprompt"):
        code, stdout = run_main(["evaluate", str(coco_run), "--out", str(tmp_path / "out"),
                                 "--no-progress", "--likelihood-method", "rk4",
                                 "--likelihood-steps", "1", "--likelihood-probes", "1"])
    assert code == 0
    assert "| Method | Images | Latent bits/dim ↑ |" in stdout
    assert "Not computed: clip_score" in stdout
    assert "Not computed: in_batch_similarity (DINO 'facebook/dino-vits16' is not on disk" in stdout
    assert "Not computed: prdc (no --reference" in stdout
    assert any("Skipping clip_score" in message for message in caplog.messages)


def test_undefined_group_value_is_not_available(coco_run, models, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="minorityprompt"):
        code, stdout = run_main(["evaluate", str(coco_run), "--out", str(tmp_path), "--metrics",
                                 "clip_score,prdc", "--nearest-k", "20", "--reference",
                                 str(coco_run), "--clip", str(models["clip"]), "--no-progress"])
    assert code == 0
    # Groups of 12 images have no 20 neighbours, so PRDC is undefined but CLIPScore is not.
    assert re.search(r"^\| DDIM \| 12 \| \d+\.\d+ \| n/a \| n/a \| n/a \| n/a \|$", stdout,
                     re.MULTILINE)
    assert any("prdc of DDIM is undefined" in message for message in caplog.messages)
    group = json.loads((tmp_path / "evaluation.json").read_text())["groups"][0]
    assert group["values"]["precision"] is None
    assert "error" in group["metrics"]["prdc"]["details"]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--metrics", "clip_score", "--clip", "/no/such/clip"],
         "model folder '/no/such/clip' was not found"),
        (["--metrics", "prdc"], "prdc compares with real images; pass --reference"),
        (["--metrics", "image_reward"], "pip install image-reward"),
        (["--metrics", "fid"], r"Unknown metrics \['fid'\] in --metrics"),
        (["--plot", "clip_score,sharpness"], "Cannot plot 'sharpness'"),
        (["--metrics", "rarity", "--reference", "/no/such/reference"],
         "Reference '/no/such/reference' does not exist"),
    ],
)
def test_bad_input_is_reported(coco_run, models, tmp_path, capsys, arguments, message):
    code = main(["evaluate", str(coco_run), "--out", str(tmp_path), "--clip", str(models["clip"]),
                 "--no-progress", *arguments])
    assert code == 2
    assert re.search(message, capsys.readouterr().err)


def test_folder_without_runs_is_reported(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path)]) == 2
    assert "No run folder found in" in capsys.readouterr().err


def test_runs_in_two_folders_stay_apart(tmp_path):
    records = []
    for folder in ("run-a", "run-b"):
        for index in range(2):
            records.append(ImageRecord(tmp_path / folder / f"{index}.png", f"{index}", "a cat",
                                       "ddim", tmp_path / folder, "tiny-sd15", None, None))
    sweep = {"parameter": "lr", "value": 0.001, "label": "lr=1e-3"}
    records.append(ImageRecord(tmp_path / "m" / "0.png", "0", "a cat", "minority",
                               tmp_path / "m", "tiny-sd15", sweep, None))
    labels = [group.label for group in group_records(records)]
    assert labels == ["DDIM [run-a]", "DDIM [run-b]", "MinorityPrompt (lr=1e-3)"]


@pytest.mark.parametrize("family", ["sd2", "sdxl"])
def test_latent_likelihood_depends_on_the_prompt(family):
    pipe = tiny(family)
    images = [Image.fromarray(np.full((32, 32, 3), value, dtype=np.uint8)) for value in (40, 200)]
    settings = LikelihoodSettings(method="rk4", num_steps=1, num_probes=1)
    first = latent_likelihood(pipe, images, ["a red circle", "a blue square"], settings)
    again = latent_likelihood(pipe, images, ["a red circle", "a blue square"], settings)
    other = latent_likelihood(pipe, images, ["a photo of a dog", "a tree"], settings)
    assert torch.isfinite(first["bits_per_dim"]).all()
    assert torch.equal(first["bits_per_dim"], again["bits_per_dim"])
    assert not torch.allclose(first["bits_per_dim"], other["bits_per_dim"])
    assert encode_latents(pipe, images).shape == (2, 4, 16, 16)
