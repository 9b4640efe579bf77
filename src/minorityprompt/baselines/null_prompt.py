"""The null-prompt baseline: DDIM whose unconditional branch encodes a chosen negative prompt.

Classifier-free guidance extrapolates away from the unconditional prediction, so encoding
`"commonly-looking"` there instead of the empty prompt pushes samples away from common-looking
images. Use it through `generate`:

    generate(pipe, prompts, seeds, **null_prompt_kwargs(), guidance_scale=7.5)

It has no effect at guidance scale 1, where no unconditional pass runs.
"""

from __future__ import annotations

from ..errors import MinorityPromptError

DEFAULT_NULL_PROMPT = "commonly-looking"


def null_prompt_kwargs(negative_prompt: str = DEFAULT_NULL_PROMPT) -> dict:
    """Keyword arguments of `generate` for the null-prompt baseline."""
    if not isinstance(negative_prompt, str) or not negative_prompt.strip():
        raise MinorityPromptError(
            f"The null prompt must be a non-empty string, got {negative_prompt!r}; the default "
            f"is {DEFAULT_NULL_PROMPT!r}."
        )
    return {"negative_prompt": negative_prompt}
