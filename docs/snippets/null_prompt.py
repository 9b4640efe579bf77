from minorityprompt import generate, load_pipeline
from minorityprompt.baselines import null_prompt_kwargs
from minorityprompt.methods import run_method

pipe = load_pipeline("tiny-sd15")
sampling = {"num_inference_steps": 6, "guidance_scale": 7.5, "output_type": "latent",
            "progress": False}

direct = generate(pipe, "a red circle", seeds=0, **null_prompt_kwargs(), **sampling)
by_name = run_method("null-prompt", pipe, "a red circle", seeds=0, **sampling)
print(null_prompt_kwargs())
print("same latents:", bool((direct.latents == by_name.latents).all()))
