"""What the prompt optimizer updates: placeholder tokens, text embedding or null-text embedding.

- `"token"`: the placeholder vectors `v` inside the text encoder's input; the conditional
  branch becomes `C_v`. This is the method's target.
- `"text-embedding"`: the encoder's output `C` itself (token embeddings, and SDXL's pooled
  vector), optimized directly; the conditional branch becomes the updated `C`.
- `"null-text"`: the unconditional branch's embeddings, optimized directly; the conditional
  branch stays `C`. The objective reaches this target only through the unconditional
  branch, so it must use classifier-free-guided estimates.

The two embedding targets keep one fp32 copy of the branch per sample, taken from the first
step that the optimizer sees and carried over from one optimized step to the next.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch
from torch import Tensor

from ..errors import MinorityPromptError
from .conditioning import Conditioning
from .prompt_encoder import PromptEncoder
from .state import StepState
from .tokens import LearnableTokens, TokenSpec

TARGETS = ("token", "text-embedding", "null-text")
BRANCHES = ("cond", "uncond")


class OptimizationTarget(Protocol):
    """Tensors that the prompt optimizer updates, and the branch they produce.

    Attributes:
        name: One of `TARGETS`, for records and messages.
        branch: `"cond"` if `encode()` replaces the conditional branch, `"uncond"` if it
            replaces the unconditional one.
    """

    name: str
    branch: str

    @property
    def parameters(self) -> list[Tensor]:
        """The fp32 leaf tensors that Adam updates, each with the batch on its first axis."""
        ...

    def prepare(self, state: StepState) -> None:
        """Set up from the first step's state; later calls do nothing."""
        ...

    def encode(self) -> Conditioning:
        """Build the branch from the current parameters, differentiable with respect to them."""
        ...


class TokenTarget:
    """The learnable placeholder vectors `v`; `encode()` returns `C_v`."""

    name = "token"
    branch = "cond"

    def __init__(self, tokens: LearnableTokens) -> None:
        self.tokens = tokens

    @property
    def parameters(self) -> list[Tensor]:
        return self.tokens.parameters

    def prepare(self, state: StepState) -> None:
        # The vectors are initialised when the run starts, from the token spec.
        return None

    def encode(self) -> Conditioning:
        return self.tokens.encode()


class EmbeddingTarget:
    """One branch's embedding tensors, optimized directly.

    Args:
        branch: `"cond"` for the text-embedding target, `"uncond"` for the null-text target.

    SDXL's `add_time_ids` are size conditioning and stay fixed; its pooled vector is
    optimized together with the token embeddings.
    """

    def __init__(self, branch: str) -> None:
        if branch not in BRANCHES:
            raise MinorityPromptError(f"Unknown branch {branch!r}; expected one of {BRANCHES}.")
        self.branch = branch
        self.name = "text-embedding" if branch == "cond" else "null-text"
        self._source: Conditioning | None = None
        self._prompt_embeds: Tensor | None = None
        self._pooled_prompt_embeds: Tensor | None = None

    @property
    def parameters(self) -> list[Tensor]:
        if self._prompt_embeds is None:
            raise MinorityPromptError(
                f"The {self.name} target has no parameters before its first step; call "
                "prepare(state) first."
            )
        if self._pooled_prompt_embeds is None:
            return [self._prompt_embeds]
        return [self._prompt_embeds, self._pooled_prompt_embeds]

    def prepare(self, state: StepState) -> None:
        if self._source is not None:
            return
        source = state.cond if self.branch == "cond" else state.uncond
        if source is None:
            raise MinorityPromptError(
                "The null-text target needs the unconditional branch, but the step state has "
                "none (state.uncond is None); run with a guidance scale above 1."
            )
        self._source = source.detach()
        self._prompt_embeds = source.prompt_embeds.detach().float().clone().requires_grad_(True)
        if source.pooled_prompt_embeds is not None:
            pooled = source.pooled_prompt_embeds.detach().float().clone()
            self._pooled_prompt_embeds = pooled.requires_grad_(True)

    def encode(self) -> Conditioning:
        source = self._source
        if source is None:
            raise MinorityPromptError(
                f"The {self.name} target was not prepared; call prepare(state) first."
            )
        dtype = source.prompt_embeds.dtype
        pooled = None
        if self._pooled_prompt_embeds is not None:
            pooled = self._pooled_prompt_embeds.to(dtype)
        return Conditioning(self._prompt_embeds.to(dtype), pooled, source.add_time_ids)


def make_target(
    name: str,
    encoder: PromptEncoder,
    prompts: Sequence[str],
    tokens: TokenSpec,
    generators: Sequence[torch.Generator] | None,
    size: tuple[int, int] | None,
) -> OptimizationTarget:
    """Build the target `name` for one sampling run of `prompts`.

    `tokens`, `generators` and `size` only apply to the `"token"` target.
    """
    if name == "token":
        return TokenTarget(LearnableTokens(encoder, prompts, tokens, generators, size))
    if name == "text-embedding":
        return EmbeddingTarget("cond")
    if name == "null-text":
        return EmbeddingTarget("uncond")
    raise MinorityPromptError(f"Unknown optimization target {name!r}; expected one of {TARGETS}.")
