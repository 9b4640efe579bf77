from minorityprompt import generate, load_pipeline
from minorityprompt.baselines import CADS

pipe = load_pipeline("tiny-sd15")
seeds = [0, 1]
cads = CADS.preset("default", seeds=seeds)
result = generate(pipe, ["a red circle"] * 2, seeds, hooks=[cads], num_inference_steps=10,
                  guidance_scale=7.5, output_type="latent", progress=False)
for step_index, t, gamma in cads.history:
    print(f"step {step_index}: t = {t:.3f}, gamma = {gamma:.2f}")
