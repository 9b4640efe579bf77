"""MinorityPrompt next to plain DDIM on the same prompts and seeds."""

from minorityprompt import PromptOptimizer, generate, load_pipeline
from minorityprompt.visualization import labelled_grid

MODEL = "tiny-sd15"
prompts = ["a red circle", "a blue square", "a green triangle"]
seeds = [0, 1, 2]
sampling = {"num_inference_steps": 20, "guidance_scale": 5.0, "progress": False}

pipe = load_pipeline(MODEL)

# Plain DDIM: no optimizer.
ddim = generate(pipe, prompts, seeds, **sampling)

# MinorityPrompt: Adam on the placeholder token every 3 steps, 3 iterations each.
optimizer = PromptOptimizer(objective="minority", every=3, iterations=3, lr=1e-2)
minority = generate(pipe, prompts, seeds, optimizer=optimizer, **sampling)

print("optimized steps:", minority.record.optimized_steps)
print("UNet calls:", ddim.model_evaluations, "and", minority.model_evaluations)
print("J before the first update:", minority.record.steps[0].objective[0])

rows = [[plain, rare] for plain, rare in zip(ddim.images, minority.images, strict=True)]
grid = labelled_grid(rows, ["DDIM", "MinorityPrompt"], prompts)
grid.save("quickstart.png")
print("wrote quickstart.png")
