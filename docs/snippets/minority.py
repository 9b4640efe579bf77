from minorityprompt import MinorityObjective, PromptOptimizer, generate, load_pipeline

pipe = load_pipeline("tiny-sd15")
prompts = ["a red circle", "a blue square"]

variants = {
    "minority": PromptOptimizer(lr=1e-2),
    "fixed s = 0.75 T": PromptOptimizer(lr=1e-2, objective_options={"s": 0.75}),
    "+ sg": PromptOptimizer(lr=1e-2, objective_options={"stop_gradient": True}),
    "naive": PromptOptimizer(lr=1e-2, objective=MinorityObjective.naive()),
}
for label, optimizer in variants.items():
    result = generate(pipe, prompts, seeds=0, optimizer=optimizer, num_inference_steps=6,
                      output_type="latent", progress=False)
    print(f"{label}: J at step 0 = {result.record.steps[0].objective[0]}")
