"""The code shown on the documentation pages runs, and every code file is shown on a page.

Tutorial files (`docs/tutorials/code/`) run as a reader runs them: in a folder of their own,
as separate processes, with the `minorityprompt` command on PATH. The short examples of the
reference pages (`docs/snippets/`) run one after another in a single process, each in a
folder of its own, which saves the import time of a process per example; their shell
examples run as separate processes.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
TUTORIAL_CODE = DOCS / "tutorials" / "code"
SNIPPETS = DOCS / "snippets"
SNIPPET_INCLUDE = re.compile(r'^--8<-- "([^"]+)"$', re.MULTILINE)

# Each tutorial's files in the order the page runs them, and text its output must contain.
TUTORIALS = {
    "quickstart": (["quickstart.py", "quickstart.sh"], ["optimized steps: [0, 3, 6"]),
    "custom-objective": (
        ["custom_objective.py", "custom_objective.sh"],
        ["'novelty'", '"objective": "', 'novelty"'],
    ),
    "solver-loop": (["solver_loop.py"], ["optimized steps: [0, 3, 6, 9]"]),
    "diffusers-callback": (["diffusers_callback.py"], ["optimized steps: [0, 3, 6, 9]"]),
    "k-diffusion": (["k_diffusion_sampler.py"], ["heun: (2, 4, 16, 16) optimized steps [0, 3, 6]"]),
    "evaluation": (
        ["evaluation_models.py", "evaluation.sh", "sweep.sh"],
        ["| MinorityPrompt |", "tradeoff.png"],
    ),
}
# Files that tutorials import instead of running.
IMPORTED_FILES = {"novelty_objective.py"}
# Files that each tutorial must leave in its folder.
TUTORIAL_OUTPUTS = {
    "quickstart": ["quickstart.png", "outputs/first/compare.png"],
    "custom-objective": ["outputs/novelty/metadata.jsonl", "outputs/mixed/metadata.jsonl"],
    "evaluation": ["outputs/run/evaluation.md", "outputs/sweep/tradeoff.png"],
}
EMBEDDED_MODEL_CALL = 'load_pipeline("embedded")'
# Runs each example file given on the command line in a fresh folder, and writes each one's
# output and traceback to the JSON file given first.
EXAMPLE_RUNNER = """
import contextlib, io, json, os, runpy, sys, tempfile, traceback
results = {}
for path in sys.argv[2:]:
    os.chdir(tempfile.mkdtemp(prefix="docs-example-", dir=os.environ["EXAMPLES_FOLDER"]))
    output = io.StringIO()
    try:
        with contextlib.redirect_stdout(output):
            runpy.run_path(path, run_name="__main__")
        results[os.path.basename(path)] = {"passed": True, "output": output.getvalue()}
    except BaseException:
        failure = output.getvalue() + traceback.format_exc()
        results[os.path.basename(path)] = {"passed": False, "output": failure}
with open(sys.argv[1], "w") as handle:
    json.dump(results, handle)
"""


def included_files() -> set[str]:
    """Names of the files that pages include with `--8<--`."""
    names = set()
    for page in DOCS.rglob("*.md"):
        names.update(SNIPPET_INCLUDE.findall(page.read_text(encoding="utf-8")))
    return names


def reader_environment() -> dict[str, str]:
    """The environment of a reader's shell: this interpreter's scripts first on PATH."""
    environment = dict(os.environ)
    scripts = str(Path(sys.executable).parent)
    environment["PATH"] = f"{scripts}{os.pathsep}{environment.get('PATH', '')}"
    environment.setdefault("OMP_NUM_THREADS", "1")
    return environment


def run_file(path: Path, folder: Path) -> str:
    """Run a `.py` file with this interpreter or a `.sh` file with `bash -e`; return stdout."""
    command = [sys.executable, path.name] if path.suffix == ".py" else ["bash", "-e", path.name]
    completed = subprocess.run(
        command, cwd=folder, env=reader_environment(), capture_output=True, text=True,
        timeout=600,
    )
    assert completed.returncode == 0, (
        f"{path.relative_to(ROOT)} failed with status {completed.returncode}:\n"
        f"{completed.stdout[-3000:]}\n{completed.stderr[-3000:]}"
    )
    return completed.stdout


def needs_missing_embedded_model(source: str) -> bool:
    """Whether `source` loads the embedded model and the model is not installed."""
    from minorityprompt.errors import MinorityPromptError
    from minorityprompt.models.embedded_model import embedded_model_path

    if EMBEDDED_MODEL_CALL not in source and 'MODEL = "embedded"' not in source:
        return False
    try:
        embedded_model_path()
    except MinorityPromptError:
        return True
    return False


def skip_without_embedded_model(source: str) -> None:
    if needs_missing_embedded_model(source):
        pytest.skip("the code uses the embedded model, which is not installed yet")


def test_every_code_file_is_shown_on_a_page():
    shown = included_files()
    code_files = [path.name for path in TUTORIAL_CODE.iterdir() if path.suffix in (".py", ".sh")]
    code_files += [path.name for path in SNIPPETS.iterdir() if path.suffix in (".py", ".sh")]
    missing = sorted(name for name in code_files if name not in shown)
    assert not missing, f"code files that no page includes: {missing}"


def test_every_included_file_exists():
    available = {path.name for path in TUTORIAL_CODE.iterdir()} | {
        path.name for path in SNIPPETS.iterdir()
    }
    missing = sorted(included_files() - available)
    assert not missing, f"pages include files that do not exist: {missing}"


def test_every_tutorial_file_runs_in_a_tutorial():
    run = {name for files, _ in TUTORIALS.values() for name in files}
    code_files = {path.name for path in TUTORIAL_CODE.iterdir() if path.suffix in (".py", ".sh")}
    unrun = sorted(code_files - run - IMPORTED_FILES)
    assert not unrun, f"tutorial files that no test runs: {unrun}"


@pytest.mark.slow
@pytest.mark.parametrize("tutorial", sorted(TUTORIALS))
def test_tutorial_runs(tutorial, tmp_path):
    files, expected_texts = TUTORIALS[tutorial]
    for path in TUTORIAL_CODE.iterdir():
        if path.suffix in (".py", ".sh"):
            shutil.copy(path, tmp_path / path.name)
    for name in files:
        skip_without_embedded_model((tmp_path / name).read_text(encoding="utf-8"))
    output = ""
    for name in files:
        output += run_file(tmp_path / name, tmp_path)

    for text in expected_texts:
        assert text in output, f"{tutorial}: {text!r} not in the output:\n{output[-3000:]}"
    for relative in TUTORIAL_OUTPUTS.get(tutorial, []):
        assert (tmp_path / relative).is_file(), f"{tutorial} did not write {relative}"


@pytest.fixture(scope="module")
def example_results(tmp_path_factory) -> dict[str, dict]:
    """Run every page example that can run here, in one process; return each one's result."""
    folder = tmp_path_factory.mktemp("examples")
    paths = [
        str(path) for path in sorted(SNIPPETS.glob("*.py"))
        if not needs_missing_embedded_model(path.read_text(encoding="utf-8"))
    ]
    results_file = folder / "results.json"
    environment = {**reader_environment(), "EXAMPLES_FOLDER": str(folder)}
    completed = subprocess.run(
        [sys.executable, "-c", EXAMPLE_RUNNER, str(results_file), *paths],
        cwd=folder, env=environment, capture_output=True, text=True, timeout=1200,
    )
    assert completed.returncode == 0 and results_file.is_file(), (
        f"the example runner failed with status {completed.returncode}:\n"
        f"{completed.stderr[-3000:]}"
    )
    return json.loads(results_file.read_text(encoding="utf-8"))


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(path.name for path in SNIPPETS.glob("*.py")))
def test_page_example_runs(name, example_results):
    skip_without_embedded_model((SNIPPETS / name).read_text(encoding="utf-8"))
    result = example_results[name]
    assert result["passed"], f"docs/snippets/{name} failed:\n{result['output'][-3000:]}"


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(path.name for path in SNIPPETS.glob("*.sh")))
def test_page_shell_example_runs(name, tmp_path):
    skip_without_embedded_model((SNIPPETS / name).read_text(encoding="utf-8"))
    shutil.copy(SNIPPETS / name, tmp_path / name)
    run_file(tmp_path / name, tmp_path)
