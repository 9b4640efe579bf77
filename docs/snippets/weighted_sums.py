from minorityprompt import (
    PromptOptimizer,
    WeightedSum,
    generate,
    get_objective,
    load_pipeline,
)
from minorityprompt.objectives import MinorityObjective, parse_objective_spec

pipe = load_pipeline("tiny-sd15")

objectives = [
    get_objective("0.5*minority + 0.01*diversity"),
    parse_objective_spec(
        "0.5*minority + 0.01*diversity", options={"minority": {"s": 0.75}}
    ),
    WeightedSum([(0.5, MinorityObjective(lam=0.5)), (0.01, "diversity")]),
]
for objective in objectives:
    optimizer = PromptOptimizer(objective=objective, lr=1e-2)
    result = generate(pipe, ["a red circle"] * 2, seeds=0, optimizer=optimizer,
                      num_inference_steps=4, output_type="latent", progress=False)
    values = [round(value) for value in result.record.steps[0].objective[0]]
    print(objective.name, "->", values)
