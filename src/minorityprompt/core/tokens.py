"""Learnable placeholder-token vectors `v`, one set per sample and per text encoder."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ..errors import MinorityPromptError
from .conditioning import Conditioning
from .prompt_encoder import EncoderSlot, PromptEncoder, TokenLayout

logger = logging.getLogger(__name__)

INIT_ENCODER = "encoder-default"
INIT_GAUSSIAN = "vocab-gaussian"

TensorInit = Tensor | Sequence[Tensor]


@dataclass(frozen=True)
class TokenSpec:
    """Where the placeholder goes and how its vectors start.

    Attributes:
        num_tokens: Number of learnable tokens per sample.
        position: `"end"` appends them to the prompt, `"start"` prepends them.
        init: A single-token word whose embedding starts `v` (default `"cool"`);
            `"encoder-default"` for the text encoder's own initialisation of a new embedding
            row (normal with std `0.02 * initializer_factor` for CLIP); `"vocab-gaussian"` for
            a Gaussian with the per-dimension mean and variance of the vocabulary embeddings;
            or a tensor of shape `(dim,)`, `(num_tokens, dim)` or `(batch, num_tokens, dim)`,
            a sequence of such tensors for SDXL's two encoders.
    """

    num_tokens: int = 1
    position: str = "end"
    init: str | TensorInit = "cool"

    def __post_init__(self) -> None:
        if not isinstance(self.num_tokens, int) or self.num_tokens < 1:
            raise MinorityPromptError(
                f"num_tokens must be a positive integer, got {self.num_tokens!r}."
            )
        if self.position not in ("end", "start"):
            raise MinorityPromptError(
                f"Unknown placeholder position {self.position!r}; use 'end' or 'start'."
            )
        if isinstance(self.init, str) and not self.init.strip():
            raise MinorityPromptError("The init word is empty; give a word such as 'cool'.")


def word_token_id(slot: EncoderSlot, word: str) -> int:
    """Return the id of `word` in `slot`'s tokenizer, raising if the word splits into tokens."""
    ids = slot.tokenizer(word, add_special_tokens=False, verbose=False).input_ids
    if len(ids) != 1:
        pieces = slot.tokenizer.convert_ids_to_tokens(ids)
        raise MinorityPromptError(
            f"The init word {word!r} is {len(ids)} tokens {pieces} for this tokenizer; choose "
            "a word that is a single token (such as 'cool'), or pass init='encoder-default'."
        )
    return ids[0]


def _initial_vectors(
    slot: EncoderSlot,
    slot_index: int,
    spec: TokenSpec,
    batch_size: int,
    generators: Sequence[torch.Generator] | None,
) -> Tensor:
    """Starting vectors for one encoder, fp32, shape `(batch, num_tokens, dim)`."""
    table = slot.text_encoder.get_input_embeddings().weight.detach()
    dim = table.shape[1]
    shape = (spec.num_tokens, dim)

    def draw(index: int) -> Tensor:
        generator = None if generators is None else generators[index]
        device = "cpu" if generator is None else generator.device
        return torch.randn(shape, generator=generator, device=device)

    init = spec.init
    if isinstance(init, str) and init == INIT_ENCODER:
        factor = getattr(slot.text_encoder.config, "initializer_factor", 1.0)
        vectors = torch.stack([draw(i) for i in range(batch_size)]) * (0.02 * factor)
    elif isinstance(init, str) and init == INIT_GAUSSIAN:
        table32 = table.float().cpu()
        mean, std = table32.mean(dim=0), table32.std(dim=0)
        vectors = torch.stack([draw(i) for i in range(batch_size)]) * std + mean
    elif isinstance(init, str):
        row = table[word_token_id(slot, init)].float().cpu()
        vectors = row.expand(batch_size, spec.num_tokens, dim).clone()
    else:
        tensor = init[slot_index] if isinstance(init, (list, tuple)) else init
        if not isinstance(tensor, Tensor):
            raise MinorityPromptError(
                f"init must be a word, {INIT_ENCODER!r}, {INIT_GAUSSIAN!r} or a tensor; got "
                f"{type(tensor).__name__}."
            )
        if tensor.shape[-1] != dim:
            raise MinorityPromptError(
                f"The init tensor has last dimension {tensor.shape[-1]}, but text encoder "
                f"{slot_index + 1} embeds in {dim} dimensions."
            )
        vectors = tensor.detach().float().cpu().expand(batch_size, spec.num_tokens, dim).clone()
    return vectors.to(table.device)


class LearnableTokens:
    """The vectors `v` of a batch of prompts and the encoding `C_v` that uses them.

    Each sample has its own `num_tokens` vectors per text encoder, kept as fp32 leaf tensors
    apart from the embedding matrix, whatever the pipeline's dtype.

    Args:
        encoder: The pipeline's prompt encoder.
        prompts: One user prompt per sample, without any placeholder string.
        spec: Token count, position and initialisation.
        generators: One generator per sample for random initialisations.
        size: `(height, width)` for SDXL's time ids.
    """

    def __init__(
        self,
        encoder: PromptEncoder,
        prompts: Sequence[str],
        spec: TokenSpec | None = None,
        generators: Sequence[torch.Generator] | None = None,
        size: tuple[int, int] | None = None,
    ) -> None:
        self.encoder = encoder
        self.prompts = list(prompts)
        self.spec = spec or TokenSpec()
        self.size = size
        self.layouts: list[TokenLayout] = [
            encoder.layout(slot, self.prompts, self.spec.num_tokens, self.spec.position)
            for slot in encoder.slots
        ]
        self.vectors: list[Tensor] = [
            _initial_vectors(slot, index, self.spec, len(self.prompts), generators).requires_grad_(
                True
            )
            for index, slot in enumerate(encoder.slots)
        ]

    @property
    def parameters(self) -> list[Tensor]:
        return self.vectors

    def encode(self) -> Conditioning:
        """`C_v` with the current vectors; differentiable with respect to them."""
        return self.encoder.encode(self.prompts, self.layouts, self.vectors, self.size)

    def snapshot(self) -> list[Tensor]:
        """Detached copies of the current vectors."""
        return [vector.detach().clone() for vector in self.vectors]
