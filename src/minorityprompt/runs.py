"""Planning and running a generation job over many prompts, seeds and methods.

Every image has a key (prompt index, sample index, method) and a seed that depends only on
its prompt and sample index, so an image is the same whatever batch or process produces it,
and a resumed or sharded run produces exactly the images of an uninterrupted one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tqdm.auto import tqdm

from .errors import MinorityPromptError
from .outputs import RunWriter, image_key
from .prompts import PromptEntry

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ImageJob:
    """One image to generate."""

    prompt_index: int
    sample_index: int
    method: str
    prompt: str
    seed: int

    @property
    def key(self) -> str:
        return image_key(self.prompt_index, self.sample_index, self.method)


def plan_jobs(
    entries: Sequence[PromptEntry],
    methods: Sequence[str],
    images_per_prompt: int = 1,
    seed: int = 0,
    use_file_seeds: bool = False,
) -> list[ImageJob]:
    """Every image of the run; methods share seeds, so their images compare one to one.

    The seed of sample `k` of prompt `p` is `seed + p * images_per_prompt + k`, or the
    file's per-prompt seed plus `k` with `use_file_seeds`.
    """
    if images_per_prompt < 1:
        raise MinorityPromptError(f"images per prompt must be at least 1, got {images_per_prompt}.")
    jobs = []
    for method in methods:
        for prompt_index, entry in enumerate(entries):
            for sample_index in range(images_per_prompt):
                if use_file_seeds and entry.seed is not None:
                    sample_seed = entry.seed + sample_index
                else:
                    sample_seed = seed + prompt_index * images_per_prompt + sample_index
                jobs.append(ImageJob(prompt_index, sample_index, method, entry.text, sample_seed))
    return jobs


def batches(jobs: Sequence[ImageJob], batch_size: int, group_by_prompt: Callable[[str], bool]):
    """Split jobs into batches of one method; methods for which `group_by_prompt` is true
    (batch objectives such as diversity) get batches of a single prompt."""
    if batch_size < 1:
        raise MinorityPromptError(f"The batch size must be at least 1, got {batch_size}.")
    current: list[ImageJob] = []
    for job in jobs:
        if current and (
            job.method != current[0].method
            or len(current) == batch_size
            or (group_by_prompt(job.method) and job.prompt_index != current[0].prompt_index)
        ):
            yield current
            current = []
        current.append(job)
    if current:
        yield current


BatchRunner = Callable[[str, list[str], list[int]], tuple[list, list[dict]]]


def run_jobs(
    jobs: Sequence[ImageJob],
    writer: RunWriter,
    run_batch: BatchRunner,
    batch_size: int,
    common_metadata: dict,
    group_by_prompt: Callable[[str], bool] = lambda method: False,
    progress: bool = True,
) -> dict:
    """Generate the jobs of this process that are not written yet.

    Args:
        jobs: Every job of the run; this process takes those with
            `index % writer.world_size == writer.rank`.
        writer: The run folder.
        run_batch: `(method, prompts, seeds) -> (images, per-image metadata)`.
        batch_size: Images per sampler call.
        common_metadata: Fields written into every image's metadata line.
        group_by_prompt: Methods whose batches must share one prompt.
        progress: Show a progress bar over images on stderr.

    Returns:
        Counts: `planned`, `skipped` (already written) and `generated` for this process.
    """
    mine = [job for index, job in enumerate(jobs) if index % writer.world_size == writer.rank]
    writer.compact()
    done = writer.completed_keys()
    todo = [job for job in mine if job.key not in done]
    writer.remove_temporary_files(job.key for job in mine)
    if len(todo) < len(mine):
        logger.info("Resuming: %d of %d images already written", len(mine) - len(todo), len(mine))

    bar = tqdm(total=len(todo), desc="images", unit="img", disable=not progress)
    generated = 0
    for batch in batches(todo, batch_size, group_by_prompt):
        method = batch[0].method
        started = time.perf_counter()
        images, extra = run_batch(
            method, [job.prompt for job in batch], [job.seed for job in batch]
        )
        seconds = (time.perf_counter() - started) / len(batch)
        for job, image, fields in zip(batch, images, extra, strict=True):
            metadata = {
                **common_metadata,
                "prompt": job.prompt,
                "prompt_index": job.prompt_index,
                "sample_index": job.sample_index,
                "seed": job.seed,
                "method": method,
                "seconds_per_image": round(seconds, 4),
                **fields,
            }
            writer.write(job.key, image, metadata)
            generated += 1
            bar.update(1)
    bar.close()
    return {"planned": len(mine), "skipped": len(mine) - len(todo), "generated": generated}
