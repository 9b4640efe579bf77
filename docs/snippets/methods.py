from minorityprompt import load_pipeline
from minorityprompt.methods import available_methods, run_method

pipe = load_pipeline("tiny-sd15")
prompts = ["a red circle", "a red circle"]
settings = {
    "ddim": {},
    "minority": {"lr": 1e-2, "every": 3},
    "null-prompt": {},
    "cads": {"preset": "default", "noise_scale": 0.25},
    "sgms": {"lr": 5e-3},
}
print("methods:", available_methods())
for method, method_settings in settings.items():
    result = run_method(method, pipe, prompts, seeds=[0, 1], settings=method_settings,
                        num_inference_steps=6, guidance_scale=5.0, output_type="latent",
                        progress=False)
    print(f"{method}: {result.model_evaluations} UNet calls")
