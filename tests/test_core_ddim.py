import numpy as np
import torch

from minorityprompt import PromptOptimizer, generate
from minorityprompt.integrations.diffusers_callback import MinorityPromptCallback

PROMPTS = ["a photo of a cat", "a dog on a skateboard"]
SEEDS = [1, 2]
SIZE = {"height": 32, "width": 32}


def stock_images(pipe, steps, guidance_scale=7.5, negative_prompt=None):
    generators = [torch.Generator().manual_seed(seed) for seed in SEEDS]
    return pipe(PROMPTS, num_inference_steps=steps, guidance_scale=guidance_scale,
                negative_prompt=negative_prompt, generator=generators, output_type="np",
                **SIZE).images


def test_unhooked_ddim_matches_stock_pipeline(pipe):
    reference = stock_images(pipe, 5)
    ours = generate(pipe, PROMPTS, seeds=SEEDS, num_inference_steps=5, output_type="np",
                    progress=False, **SIZE)
    np.testing.assert_array_equal(ours.images, reference)


def test_ddim_without_guidance_and_with_negative_prompt(pipe):
    for guidance, negative in ((1.0, None), (5.0, ["blurry", "dark"])):
        reference = stock_images(pipe, 4, guidance, negative)
        ours = generate(pipe, PROMPTS, seeds=SEEDS, num_inference_steps=4, output_type="np",
                        guidance_scale=guidance, negative_prompt=negative, progress=False, **SIZE)
        np.testing.assert_array_equal(ours.images, reference)


def test_callback_path_equals_own_loop(pipe):
    own = generate(pipe, PROMPTS, seeds=SEEDS, num_inference_steps=7, output_type="np",
                   optimizer=PromptOptimizer(lr=1e-2), progress=False, **SIZE)
    callback = MinorityPromptCallback(PromptOptimizer(lr=1e-2))
    images = pipe(**callback.prepare(pipe, PROMPTS, seeds=SEEDS, num_inference_steps=7, **SIZE),
                  output_type="np").images
    np.testing.assert_array_equal(images, own.images)
    assert callback.record.optimized_steps == own.record.optimized_steps == [0, 3, 6]
    assert not np.array_equal(images, stock_images(pipe, 7))
