"""MinorityPrompt inside a stock diffusers pipeline, through `callback_on_step_end`."""

from diffusers import DPMSolverMultistepScheduler

from minorityprompt import MinorityPromptCallback, PromptOptimizer, load_pipeline

MODEL = "tiny-sd15"
pipe = load_pipeline(MODEL)
prompts = ["a red circle", "a blue square"]

callback = MinorityPromptCallback(PromptOptimizer(every=3, iterations=3, lr=1e-2))
# prepare() optimizes step 0 and returns every argument the pipeline needs.
kwargs = callback.prepare(
    pipe, prompts, seeds=[0, 1], num_inference_steps=10, guidance_scale=5.0
)
print("pipeline arguments:", sorted(kwargs))
images = pipe(**kwargs).images
print("images:", len(images), "optimized steps:", callback.record.optimized_steps)

# Any scheduler works, because the callback never touches the scheduler's state.
pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)
kwargs = callback.prepare(
    pipe, prompts, seeds=[0, 1], num_inference_steps=10, guidance_scale=5.0
)
images = pipe(**kwargs, output_type="np").images
print("DPM-Solver++:", images.shape, "optimized steps:", callback.record.optimized_steps)
