import tempfile

from minorityprompt import generate, load_pipeline
from minorityprompt.metrics import clip_score, load_clip
from minorityprompt.testing_metrics import save_tiny_clip

pipe = load_pipeline("tiny-sd15")
prompts = ["a red circle", "a blue square"]
images = generate(pipe, prompts, seeds=0, num_inference_steps=4, progress=False).images

# A tiny random CLIP replaces openai/clip-vit-large-patch14 here.
with tempfile.TemporaryDirectory() as folder:
    clip = load_clip(save_tiny_clip(folder), device="cpu")
result = clip_score(images, prompts, clip)
print("per image:", result.scores.tolist(), "batch:", result.mean)
