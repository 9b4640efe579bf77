"""Named models with the sampling settings that MinorityPrompt uses for them."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ..errors import MinorityPromptError


@dataclass(frozen=True)
class Preset:
    """A model and its default sampling and optimization settings.

    Attributes:
        name: The preset's name for `--model`.
        source: Hub id, or `"embedded"` / `"tiny-<family>"` for models built into the package.
        family: `"sd15"`, `"sd2"` or `"sdxl"`; selects the pipeline class for single files.
        solver: Solver name.
        steps: Sampling steps.
        guidance_scale: Classifier-free guidance weight (1 runs no unconditional pass).
        every: Optimize every N steps.
        iterations: Adam iterations K per optimized step.
        lr: Adam learning rate.
        init: Init word of the placeholder token.
        resolution: Image side in pixels.
        unet_file: For distilled checkpoints, a `(repo, filename)` UNet that replaces the base
            model's UNet.
    """

    name: str
    source: str
    family: str
    solver: str = "ddim"
    steps: int = 50
    guidance_scale: float = 7.5
    every: int = 3
    iterations: int = 3
    lr: float = 1e-3
    init: str = "cool"
    resolution: int = 512
    unet_file: tuple[str, str] | None = None
    description: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


PRESETS: dict[str, Preset] = {
    preset.name: preset
    for preset in (
        Preset(
            "embedded",
            "embedded",
            "sd15",
            steps=50,
            guidance_scale=5.0,
            # The model's text encoder saw only short captions, and its token embeddings are
            # small (norm about 0.2), so a larger step leaves the caption's meaning behind.
            # The end-of-text token as init word makes C_v start equal to C.
            lr=2e-3,
            init="<|endoftext|>",
            resolution=32,
            description="the small model shipped in this package, which draws 32x32 shapes offline",
        ),
        Preset(
            "sd15",
            "stable-diffusion-v1-5/stable-diffusion-v1-5",
            "sd15",
            description="Stable Diffusion 1.5, DDIM 50 steps, w = 7.5",
        ),
        Preset(
            "sd2",
            "stabilityai/stable-diffusion-2",
            "sd2",
            resolution=768,
            description="Stable Diffusion 2 (768 px, v-prediction), DDIM 50 steps, w = 7.5",
        ),
        Preset(
            "sd2-base",
            "stabilityai/stable-diffusion-2-base",
            "sd2",
            description="Stable Diffusion 2 base (512 px, epsilon), DDIM 50 steps, w = 7.5",
        ),
        Preset(
            "sdxl",
            "stabilityai/stable-diffusion-xl-base-1.0",
            "sdxl",
            resolution=1024,
            description="SDXL base 1.0, DDIM 50 steps, w = 7.5",
        ),
        Preset(
            "sdxl-lightning",
            "stabilityai/stable-diffusion-xl-base-1.0",
            "sdxl",
            solver="lightning",
            steps=4,
            guidance_scale=1.0,
            every=1,
            resolution=1024,
            unet_file=("ByteDance/SDXL-Lightning", "sdxl_lightning_4step_unet.safetensors"),
            description="SDXL-Lightning 4-step UNet, DDIM on trailing timesteps, w = 1, N = 1",
        ),
        Preset("tiny-sd15", "tiny-sd15", "sd15", steps=10, resolution=32,
               description="random tiny SD 1.x pipeline for tests (images are noise)"),
        Preset("tiny-sd2", "tiny-sd2", "sd2", steps=10, resolution=32,
               description="random tiny SD 2.x v-prediction pipeline for tests"),
        Preset("tiny-sdxl", "tiny-sdxl", "sdxl", steps=10, resolution=32,
               description="random tiny SDXL pipeline for tests"),
    )
}

DEFAULT_MODEL = "embedded"


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise MinorityPromptError(f"Unknown preset {name!r}; presets are {sorted(PRESETS)}.")
    return PRESETS[name]
