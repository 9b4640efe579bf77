from minorityprompt import MinorityPromptError, PromptOptimizer, generate, load_pipeline

pipe = load_pipeline("tiny-sd15")
optimizer = PromptOptimizer(lr=1e-2)
result = generate(pipe, "a red circle", seeds=0, optimizer=optimizer, solver="cfgpp",
                  guidance_scale=0.6, num_inference_steps=10, progress=False)
print(result.model_evaluations, "UNet calls")

try:
    generate(pipe, "a red circle", seeds=0, solver="cfgpp", guidance_scale=7.5,
             num_inference_steps=10, progress=False)
except MinorityPromptError as error:
    print(error)
