from minorityprompt import PromptOptimizer, generate, get_solver, load_pipeline
from minorityprompt.solvers.registry import available_solvers, solver_options

pipe = load_pipeline("tiny-sd15")
optimizer = PromptOptimizer(lr=1e-2)

for name in available_solvers():
    print(f"{name}: options {solver_options(name)}")

# By name, with the default options.
result = generate(pipe, "a red circle", seeds=0, optimizer=optimizer, solver="dpmpp-2m",
                  num_inference_steps=10, progress=False)
print(result.model_evaluations, "UNet calls")

# As an instance, with options.
solver = get_solver("ddim", eta=0.5, timestep_spacing="trailing")
result = generate(pipe, "a red circle", seeds=0, optimizer=optimizer, solver=solver,
                  num_inference_steps=10, progress=False)
print(solver.name, solver.eta, result.record.optimized_steps)
