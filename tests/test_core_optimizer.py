import numpy as np
import pytest
import torch

from minorityprompt import MinorityPromptError, PromptOptimizer, generate
from minorityprompt.integrations.diffusers_callback import MinorityPromptCallback

PROMPTS = ["a photo of a cat", "a red bus in the snow"]
SIZE = {"height": 32, "width": 32}


def warm_up(pipe) -> None:
    """Run the stock prompt encoding once: transformers 5 installs its hidden-state capture
    hooks on the first `output_hidden_states=True` call and keeps them."""
    with torch.no_grad():
        pipe.encode_prompt(
            ["warm up"], device="cpu", num_images_per_prompt=1, do_classifier_free_guidance=False
        )


def pipeline_snapshot(pipe) -> dict:
    state = {"grad_enabled": torch.is_grad_enabled(), "params": {}, "flags": {}, "hooks": {}}
    for name, component in pipe.components.items():
        if isinstance(component, torch.nn.Module):
            for param_name, param in component.named_parameters():
                state["params"][f"{name}.{param_name}"] = param.detach().clone()
                state["flags"][f"{name}.{param_name}"] = param.requires_grad
            state["hooks"][name] = sum(
                len(m._forward_hooks) + len(m._forward_pre_hooks) for m in component.modules()
            )
        elif hasattr(component, "__len__") and hasattr(component, "convert_tokens_to_ids"):
            state[f"{name}.len"] = len(component)
    return state


def assert_same_pipeline(before: dict, after: dict):
    assert after["grad_enabled"] == before["grad_enabled"]
    assert after["flags"] == before["flags"]
    assert after["hooks"] == before["hooks"]
    for key in before:
        if key.endswith(".len"):
            assert after[key] == before[key], key
    for name, tensor in before["params"].items():
        assert torch.equal(after["params"][name], tensor), f"{name} changed"


def test_only_v_changes_and_pipeline_is_restored(pipe):
    warm_up(pipe)
    before = pipeline_snapshot(pipe)
    optimizer = PromptOptimizer(lr=5e-2)
    result = generate(
        pipe,
        PROMPTS,
        seeds=[3, 4],
        optimizer=optimizer,
        num_inference_steps=4,
        output_type="np",
        progress=False,
        **SIZE,
    )
    assert result.record.optimized_steps == [0, 3]
    assert_same_pipeline(before, pipeline_snapshot(pipe))


def test_callback_path_restores_pipeline(pipe):
    warm_up(pipe)
    before = pipeline_snapshot(pipe)
    callback = MinorityPromptCallback(PromptOptimizer(lr=5e-2))
    pipe(
        **callback.prepare(pipe, PROMPTS, seeds=[3, 4], num_inference_steps=4, **SIZE),
        output_type="np",
    )
    assert_same_pipeline(before, pipeline_snapshot(pipe))


def test_vectors_move_and_stay_fp32(pipe):
    from minorityprompt import Denoiser, PromptEncoder
    from minorityprompt.solvers.base import SamplingSetup
    from minorityprompt.solvers.ddim import DDIMSolver

    encoder = PromptEncoder.from_pipeline(pipe)
    run = PromptOptimizer(lr=1e-1, every=1).start(encoder, PROMPTS, seeds=[0, 1], size=(32, 32))
    initial = run.tokens.snapshot()
    solver = DDIMSolver()
    with torch.no_grad():
        cond = encoder.encode(PROMPTS, size=(32, 32))
        uncond = encoder.encode_negative(None, 2, (32, 32))
        timesteps, final = solver.timesteps(pipe.scheduler.config, 2)
        setup = SamplingSetup(Denoiser.from_pipeline(pipe), cond, uncond, 7.5, timesteps, final)
        solver.sample(
            setup,
            torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(0)),
            run,
            progress=False,
        )
    for start, vector in zip(initial, run.tokens.vectors, strict=True):
        assert vector.dtype == torch.float32
        assert not torch.equal(start, vector.detach())
    assert len(run.record.steps[0].objective) == 3


def test_second_run_reproduces_first():
    from conftest import tiny

    pipe = tiny("sd15")
    kwargs = dict(seeds=[7, 8], num_inference_steps=4, output_type="np", progress=False, **SIZE)
    first = generate(pipe, PROMPTS, optimizer=PromptOptimizer(lr=5e-2), **kwargs)
    second = generate(pipe, PROMPTS, optimizer=PromptOptimizer(lr=5e-2), **kwargs)
    np.testing.assert_array_equal(first.images, second.images)


def test_same_seed_same_image_in_any_batch():
    from conftest import tiny

    pipe = tiny("sd15")
    kwargs = dict(num_inference_steps=4, output_type="np", progress=False, **SIZE)
    optimizer = PromptOptimizer(lr=5e-2)
    batch = generate(pipe, PROMPTS, seeds=[11, 12], optimizer=optimizer, **kwargs)
    alone = generate(pipe, PROMPTS[1:], seeds=[12], optimizer=optimizer, **kwargs)
    np.testing.assert_allclose(batch.images[1], alone.images[0], atol=1e-5)


def test_schedule_every_n_counts_sampling_steps():
    from conftest import tiny

    pipe = tiny("sd15")
    result = generate(
        pipe,
        PROMPTS[:1],
        optimizer=PromptOptimizer(every=2, iterations=1),
        num_inference_steps=7,
        output_type="latent",
        progress=False,
        **SIZE,
    )
    assert result.record.optimized_steps == [0, 2, 4, 6]
    labels = [step.conditioning for step in result.record.steps]
    assert labels == ["optimized", "base"] * 3 + ["optimized"]
    # Sampling: one batched CFG call per step; optimizing: two calls per Adam iteration.
    assert result.model_evaluations == 7 + 4 * 1 * 2
    assert result.record.model_evaluations == 4 * 1 * 2


def test_explicit_schedule_and_reuse():
    from conftest import tiny

    pipe = tiny("sd15")
    optimizer = PromptOptimizer(schedule={1, 2}, iterations=1, reuse_optimized=True)
    result = generate(
        pipe,
        PROMPTS[:1],
        optimizer=optimizer,
        num_inference_steps=4,
        output_type="latent",
        progress=False,
        **SIZE,
    )
    labels = [step.conditioning for step in result.record.steps]
    assert labels == ["base", "optimized", "optimized", "reused"]


def test_zero_iterations_uses_initial_vectors():
    from conftest import tiny

    pipe = tiny("sd15")
    result = generate(
        pipe,
        PROMPTS[:1],
        optimizer=PromptOptimizer(iterations=0),
        num_inference_steps=3,
        output_type="latent",
        progress=False,
        **SIZE,
    )
    assert result.record.optimized_steps == [0]
    assert result.record.model_evaluations == 0


def test_guidance_one_runs_no_unconditional_pass():
    from conftest import tiny

    pipe = tiny("sdxl")
    result = generate(
        pipe,
        PROMPTS,
        seeds=[0, 1],
        guidance_scale=1.0,
        num_inference_steps=3,
        optimizer=PromptOptimizer(every=1, iterations=1),
        output_type="latent",
        progress=False,
        **SIZE,
    )
    assert result.model_evaluations == 3 + 3 * 2


def test_low_precision_pipeline_keeps_fp32_vectors():
    from minorityprompt.testing import tiny_sd_pipeline

    pipe = tiny_sd_pipeline("sd15").to(torch.bfloat16)
    result = generate(
        pipe,
        PROMPTS[:1],
        optimizer=PromptOptimizer(lr=1e-2),
        num_inference_steps=3,
        output_type="latent",
        progress=False,
        **SIZE,
    )
    assert result.latents.dtype == torch.bfloat16
    values = result.record.steps[0].objective
    assert all(np.isfinite(value) for row in values for value in row)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"every": 0}, "every \\(N\\) must be an integer of at least 1, got 0"),
        ({"iterations": -1}, "iterations \\(K\\) must be a non-negative integer, got -1"),
        ({"lr": 0.0}, "learning rate must be positive, got 0.0"),
        ({"lr": -1e-3}, "learning rate must be positive"),
        ({"objective": "nonexistent"}, "Unknown objective 'nonexistent'"),
    ],
)
def test_optimizer_rejects_bad_settings(options, message):
    with pytest.raises(MinorityPromptError, match=message):
        PromptOptimizer(**options)


def test_objective_with_wrong_shape_is_reported():
    from conftest import tiny

    class ScalarObjective:
        name = "scalar"

        def __call__(self, state, cond_v):
            return cond_v.prompt_embeds.sum()

    with pytest.raises(
        MinorityPromptError, match="returned shape \\(\\); it must return one value"
    ):
        generate(
            tiny("sd15"),
            PROMPTS,
            optimizer=PromptOptimizer(objective=ScalarObjective()),
            num_inference_steps=2,
            output_type="latent",
            progress=False,
            **SIZE,
        )
