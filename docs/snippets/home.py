from minorityprompt import PromptOptimizer, generate, load_pipeline

pipe = load_pipeline("embedded")
optimizer = PromptOptimizer(objective="minority", every=3, iterations=3, lr=1e-2)
result = generate(pipe, ["a red circle"] * 4, seeds=0, optimizer=optimizer)
result.images[0].save("minority.png")
print(result.record.optimized_steps)
