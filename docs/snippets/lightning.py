from minorityprompt import PromptOptimizer, generate, load_pipeline
from minorityprompt.solvers.lightning import LightningSolver

pipe = load_pipeline("tiny-sdxl")
optimizer = PromptOptimizer(objective="minority", **LightningSolver.optimizer_defaults)
result = generate(pipe, ["a cat wearing a hat"] * 2, seeds=[0, 1], optimizer=optimizer,
                  solver="lightning", num_inference_steps=4,
                  guidance_scale=LightningSolver.default_guidance_scale, progress=False)
print("timesteps:", [step.timestep for step in result.record.steps])
print("optimized steps:", result.record.optimized_steps)
