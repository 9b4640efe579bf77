from minorityprompt import PromptOptimizer, generate, load_pipeline

pipe = load_pipeline("tiny-sd15")
optimizer = PromptOptimizer(objective="diversity", every=1, iterations=2, lr=1e-2)
result = generate(pipe, ["a red circle"] * 4, seeds=0, optimizer=optimizer,
                  num_inference_steps=4, output_type="latent", progress=False)
for step in result.record.steps:
    before, after = step.objective
    print(f"step {step.step_index}: J_i {[round(value) for value in before]} "
          f"-> {[round(value) for value in after]} after one Adam update")
