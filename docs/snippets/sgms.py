from minorityprompt import generate, load_pipeline
from minorityprompt.baselines import SGMS

pipe = load_pipeline("tiny-sd15")
seeds = [0, 1]
sgms = SGMS(lr=5e-3, every=3, iterations=3, seeds=seeds)
result = generate(pipe, ["a red circle"] * 2, seeds, hooks=[sgms], num_inference_steps=10,
                  guidance_scale=7.5, output_type="latent", progress=False)
for record in sgms.history:
    first = [round(value) for value in record.objective[0]]
    last = [round(value) for value in record.objective[-1]]
    print(f"step {record.step_index}: J {first} -> {last}")
