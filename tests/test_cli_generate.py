"""The command line end to end on tiny models and real prompt files."""

import json

import numpy as np
import pytest
from PIL import Image

from minorityprompt.cli.main import main
from minorityprompt.prompts import read_prompts

FAST = ["--steps", "3", "--no-progress", "--batch-size", "8"]


def read_metadata(folder):
    lines = (folder / "metadata.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_prompt_files_parse_with_real_data(prompt_files):
    coco = read_prompts(prompt_files["coco"])
    assert len(coco) == 30000
    assert coco[0].text == "A bicycle replica with a clock as the front wheel."
    assert coco[0].seed == 41337
    # 97 captions hold a newline inside quotes; counting lines would give more rows.
    assert len({entry.text for entry in coco}) > 29000
    parti = read_prompts(prompt_files["parti"])
    assert len(parti) == 1632
    assert len(read_prompts(prompt_files["professions"])) == 85
    assert len(read_prompts(prompt_files["professions_list"])) == 252


def test_generate_compare_on_real_prompts(tmp_path, prompt_files):
    out = tmp_path / "run"
    code = main(["generate", "--model", "tiny-sd15", "--prompts", str(prompt_files["coco"]),
                 "--limit", "12", "--file-seeds", "--compare", "--out", str(out), *FAST])
    assert code == 0
    records = read_metadata(out)
    assert len(records) == 24
    assert {record["method"] for record in records} == {"ddim", "minority"}
    coco = read_prompts(prompt_files["coco"], limit=12)
    by_key = {record["key"]: record for record in records}
    for index, entry in enumerate(coco):
        ddim = by_key[f"{index:06d}-000-ddim"]
        minority = by_key[f"{index:06d}-000-minority"]
        assert ddim["prompt"] == minority["prompt"] == entry.text
        assert ddim["seed"] == minority["seed"] == entry.seed
        assert ddim["method_settings"] == {}
        assert "optimizer_record" not in ddim
        assert minority["method_settings"]["lr"] == 1e-3
        assert minority["method_settings"]["init"] == "cool"
        assert minority["optimizer_record"]["optimized_steps"] == [0]
        assert len(minority["optimizer_record"]["steps"][0]["objective"]) == 3
        image = Image.open(out / minority["file"])
        assert image.mode == "RGB"
        assert image.size == (32, 32)
        pixels = np.asarray(image)
        assert pixels.dtype == np.uint8
    assert (out / "compare.png").is_file()


def test_generate_parti_and_professions_both_methods(tmp_path, prompt_files):
    for name, method in (("parti", "ddim"), ("professions", "minority")):
        out = tmp_path / name
        code = main(["generate", "--model", "tiny-sdxl", "--prompts", str(prompt_files[name]),
                     "--limit", "10", "--method", method, "--out", str(out), *FAST])
        assert code == 0
        records = read_metadata(out)
        assert len(records) == 10
        assert len(list((out / "images").glob("*.png"))) == 10
        assert all(record["method"] == method for record in records)


def test_same_seed_same_image_across_batch_sizes(tmp_path):
    prompts = ["a red circle", "a blue square", "a green triangle"]
    for batch_size in ("1", "3"):
        main(["generate", "--model", "tiny-sd15", *prompts, "--steps", "3", "--no-progress",
              "--batch-size", batch_size, "--out", str(tmp_path / batch_size)])
    for index in range(3):
        name = f"images/{index:06d}-000-minority.png"
        one = np.asarray(Image.open(tmp_path / "1" / name)).astype(int)
        three = np.asarray(Image.open(tmp_path / "3" / name)).astype(int)
        # Batched BLAS kernels may differ in the last float bits, so allow one grey level.
        assert np.abs(one - three).max() <= 1


def test_rerun_resumes_without_duplicates(tmp_path):
    out = tmp_path / "run"
    args = ["generate", "--model", "tiny-sd15", "a cat", "a dog", "--out", str(out), *FAST]
    assert main(args) == 0
    first = (out / "metadata.jsonl").read_text()
    (out / "images" / "000001-000-minority.png").unlink()
    assert main(args) == 0
    records = read_metadata(out)
    assert len(first.splitlines()) == 2
    # The lost image is generated again, and the metadata file lists its key once.
    assert sorted(record["key"] for record in records) == [
        "000000-000-minority", "000001-000-minority",
    ]
    assert (out / "images" / "000001-000-minority.png").is_file()


def test_tiny_model_command_and_loading(tmp_path):
    folder = tmp_path / "tiny"
    assert main(["tiny-model", str(folder), "--family", "sd2"]) == 0
    out = tmp_path / "run"
    assert main(["generate", "--model", str(folder), "a cat", "--height", "32", "--width", "32",
                 "--out", str(out), *FAST]) == 0
    assert read_metadata(out)[0]["model"] == str(folder)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--model", "/no/such/model", "a cat"], "Model '/no/such/model' is not a preset"),
        (["--model", "tiny-sd15", "--init", "photosynthesizing", "a cat"],
         "init word 'photosynthesizing' is"),
        (["--model", "tiny-sd15", "--every", "0", "a cat"], "every \\(N\\) must be an integer"),
        (["--model", "tiny-sd15", "--iterations", "-1", "a cat"], "iterations \\(K\\) must be"),
        (["--model", "tiny-sd15", "--lr", "0", "a cat"], "learning rate must be positive"),
        (["--model", "tiny-sd15"], "No prompt given"),
        (["--model", "tiny-sd15", "--s", "later", "a cat"], "Invalid --s 'later'"),
    ],
)
def test_bad_input_is_reported(tmp_path, capsys, arguments, message):
    import re

    code = main(["generate", "--out", str(tmp_path / "out"), *FAST, *arguments])
    assert code == 2
    assert re.search(message, capsys.readouterr().err)


def test_empty_prompt_file_is_reported(tmp_path, capsys):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    code = main(["generate", "--model", "tiny-sd15", "--prompts", str(empty), "--out",
                 str(tmp_path / "out")])
    assert code == 2
    assert "contains no prompt" in capsys.readouterr().err


def test_unknown_method_is_reported(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["generate", "--method", "magic", "a cat"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'magic'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("method", "extra"),
    [
        ("null-prompt", []),
        ("cads", ["--set", "tau1=0.5"]),
        ("sgms", ["--set", "lr=0.01"]),
        ("diversity", ["--images-per-prompt", "2"]),
        ("minority", ["--naive"]),
        ("minority", ["--target", "text-embedding", "--objective", "minority"]),
    ],
)
def test_every_method_runs_from_the_cli(tmp_path, method, extra):
    out = tmp_path / method
    code = main(["generate", "--model", "tiny-sd15", "a red bus", "--method", method,
                 "--out", str(out), *FAST, *extra])
    assert code == 0
    records = read_metadata(out)
    assert records
    assert all(record["method"] == method for record in records)


def test_bad_method_setting_is_reported(tmp_path, capsys):
    code = main(["generate", "--model", "tiny-sd15", "a cat", "--method", "cads", "--set",
                 "speed=3", "--out", str(tmp_path / "out"), *FAST])
    assert code == 2
    assert "speed" in capsys.readouterr().err


@pytest.mark.parametrize("solver", ["ddim", "ddim-sde", "dpmpp-2m", "cfgpp", "cfgpp-dpmpp-2m",
                                    "lightning"])
@pytest.mark.parametrize("model", ["tiny-sd15", "tiny-sd2", "tiny-sdxl"])
def test_minority_runs_with_every_solver(tmp_path, solver, model):
    out = tmp_path / "run"
    steps = "4" if solver == "lightning" else "3"
    code = main(["generate", "--model", model, "a red bus", "--method", "minority", "--solver",
                 solver, "--out", str(out), "--no-progress", "--steps", steps])
    assert code == 0
    record = read_metadata(out)[0]
    assert record["solver"] == solver
    assert record["optimizer_record"]["optimized_steps"][0] == 0
    if solver.startswith("cfgpp"):
        assert record["guidance_scale"] == 0.6
    if solver == "lightning":
        assert record["guidance_scale"] == 1.0
        assert record["optimizer_record"]["optimized_steps"] == [0, 1, 2, 3]
