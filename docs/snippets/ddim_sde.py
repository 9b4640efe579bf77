from minorityprompt import PromptOptimizer, generate, load_pipeline

pipe = load_pipeline("tiny-sd15")
optimizer = PromptOptimizer(lr=1e-2)
first = generate(pipe, "a red circle", seeds=7, optimizer=optimizer, solver="ddim-sde",
                 num_inference_steps=10, output_type="latent", progress=False)
again = generate(pipe, "a red circle", seeds=7, optimizer=optimizer, solver="ddim-sde",
                 num_inference_steps=10, output_type="latent", progress=False)
print("same seed, same sample:", bool((first.latents == again.latents).all()))
