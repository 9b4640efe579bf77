import tempfile

import torch

from minorityprompt import generate, load_pipeline
from minorityprompt.metrics import (
    in_batch_similarity,
    in_batch_similarity_of_images,
    load_dino,
)
from minorityprompt.testing_metrics import save_tiny_dino

# From features: one group per prompt, the diagonal excluded.
generator = torch.Generator().manual_seed(0)
features = torch.randn(6, 16, generator=generator)
groups = ["a cat"] * 3 + ["a dog"] * 3
result = in_batch_similarity(features, groups)
print("mean:", round(result.mean, 4), "per prompt:", result.per_group)

# From images: DINO features of 3 samples of each of 2 prompts.
pipe = load_pipeline("tiny-sd15")
prompts = ["a red circle"] * 3 + ["a blue square"] * 3
images = generate(pipe, prompts, seeds=0, num_inference_steps=4, progress=False).images
# A tiny random ViT replaces facebook/dino-vits16 here.
with tempfile.TemporaryDirectory() as folder:
    dino = load_dino(save_tiny_dino(folder), device="cpu")
print("images:", in_batch_similarity_of_images(images, prompts, dino).per_group)
