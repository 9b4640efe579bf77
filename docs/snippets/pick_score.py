import tempfile

from minorityprompt import generate, load_pipeline
from minorityprompt.metrics import load_pickscore, pick_score
from minorityprompt.testing_metrics import save_tiny_clip

pipe = load_pipeline("tiny-sd15")
prompts = ["a red circle", "a blue square"]
images = generate(pipe, prompts, seeds=0, num_inference_steps=4, progress=False).images

# A tiny random CLIP replaces the PickScore model and its processor here.
with tempfile.TemporaryDirectory() as folder:
    save_tiny_clip(folder)
    scorer = load_pickscore(folder, folder, device="cpu")
print("PickScore:", pick_score(images, prompts, scorer).tolist())
