"""Use a registered objective from Python: alone, with options, and in a weighted sum."""

import novelty_objective  # noqa: F401  (importing it registers "novelty")

from minorityprompt import PromptOptimizer, generate, load_pipeline
from minorityprompt.objectives import available_objectives

MODEL = "tiny-sd15"
print("registered objectives:", available_objectives())

pipe = load_pipeline(MODEL)
prompts = ["a red circle", "a red circle"]
sampling = {"num_inference_steps": 10, "guidance_scale": 5.0, "progress": False}

# By name, with constructor options.
optimizer = PromptOptimizer(
    objective="novelty", objective_options={"scale": 0.5}, lr=1e-2
)
result = generate(pipe, prompts, seeds=[0, 1], optimizer=optimizer, **sampling)
print("novelty at step 0:", result.record.steps[0].objective[0])

# In a weighted sum with the built-in objectives.
optimizer = PromptOptimizer(objective="minority + 0.1*novelty + 0.01*diversity", lr=1e-2)
result = generate(pipe, prompts, seeds=[0, 1], optimizer=optimizer, **sampling)
print("objective:", optimizer.objective.name)
print("weighted sum at step 0:", result.record.steps[0].objective[0])
