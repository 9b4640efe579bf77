"""Prompt encoding with learnable placeholder tokens for one or two CLIP text encoders.

The placeholder is positional: its token ids are inserted into the tokenized prompt, and a
forward hook on the encoder's token-embedding layer replaces the embeddings at those positions
with the learnable vectors `v` during one encoder call. Nothing is added to the tokenizer or
the embedding matrix, so the user's pipeline keeps its vocabulary, its rows and its hooks, and
a second run in the same process starts from the same state as the first.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ..errors import MinorityPromptError
from .conditioning import Conditioning

logger = logging.getLogger(__name__)

POSITIONS = ("end", "start")


@dataclass(frozen=True)
class EncoderSlot:
    """One tokenizer with its text encoder and the hidden state that the pipeline uses.

    Attributes:
        hidden_state_index: `None` for the final output after the last layer norm (SD 1.x and
            2.x); a negative index into `hidden_states` otherwise (-2 for SDXL).
        provides_pooled: Whether this encoder's first output is SDXL's pooled projection.
    """

    tokenizer: object
    text_encoder: torch.nn.Module
    hidden_state_index: int | None
    provides_pooled: bool

    @property
    def embedding_dim(self) -> int:
        return self.text_encoder.get_input_embeddings().weight.shape[1]

    @property
    def max_length(self) -> int:
        return int(self.tokenizer.model_max_length)


@dataclass(frozen=True)
class TokenLayout:
    """Token ids of a batch of prompts and where the placeholder tokens sit in them.

    Attributes:
        input_ids: Shape `(batch, max_length)`, padded like the pipeline's tokenizer call.
        placeholder_positions: Shape `(batch, num_tokens)`; `None` without placeholder.
    """

    input_ids: Tensor
    placeholder_positions: Tensor | None


class PromptEncoder:
    """Encode prompts as a Stable Diffusion or SDXL pipeline does, optionally with `v`.

    Build it with `PromptEncoder.from_pipeline(pipe)`. Without placeholder the embeddings equal
    the pipeline's own `encode_prompt` output (a test checks this for SD 1.x, 2.x and SDXL).
    """

    def __init__(
        self,
        slots: Sequence[EncoderSlot],
        device: torch.device,
        dtype: torch.dtype,
        force_zeros_for_empty_prompt: bool = False,
        default_size: tuple[int, int] | None = None,
    ) -> None:
        self.slots = list(slots)
        self.device = device
        self.dtype = dtype
        self.force_zeros_for_empty_prompt = force_zeros_for_empty_prompt
        self.default_size = default_size
        self._warned_truncation = False

    @classmethod
    def from_pipeline(cls, pipe) -> PromptEncoder:
        device = pipe.unet.device
        text_encoder_2 = getattr(pipe, "text_encoder_2", None)
        if text_encoder_2 is None:
            if getattr(pipe.text_encoder.config, "use_attention_mask", False):
                logger.warning(
                    "The text encoder uses an attention mask; the placeholder encoding runs "
                    "without one, as SD 1.x and 2.x checkpoints do."
                )
            slots = [EncoderSlot(pipe.tokenizer, pipe.text_encoder, None, False)]
            return cls(slots, device, pipe.text_encoder.dtype)

        slots = []
        if pipe.text_encoder is not None:
            slots.append(EncoderSlot(pipe.tokenizer, pipe.text_encoder, -2, False))
        slots.append(EncoderSlot(pipe.tokenizer_2, text_encoder_2, -2, True))
        size = pipe.default_sample_size * pipe.vae_scale_factor
        return cls(
            slots,
            device,
            text_encoder_2.dtype,
            force_zeros_for_empty_prompt=bool(pipe.config.force_zeros_for_empty_prompt),
            default_size=(size, size),
        )

    @property
    def is_sdxl(self) -> bool:
        return any(slot.provides_pooled for slot in self.slots)

    # -- tokenization --------------------------------------------------------------------

    def layout(
        self,
        slot: EncoderSlot,
        prompts: Sequence[str],
        num_tokens: int = 0,
        position: str = "end",
        placeholder_id: int | None = None,
    ) -> TokenLayout:
        """Tokenize `prompts` and insert `num_tokens` placeholder ids.

        A prompt too long for the encoder loses its own trailing tokens, never the
        placeholder; the first such truncation logs a warning.
        """
        if position not in POSITIONS:
            raise MinorityPromptError(
                f"Unknown placeholder position {position!r}; expected one of {POSITIONS}."
            )
        tokenizer = slot.tokenizer
        bos, eos, pad = tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id
        # Any id below EOS works: the hook replaces the embedding, and legacy CLIP configs
        # that pool at the highest id still find EOS.
        placeholder_id = bos if placeholder_id is None else placeholder_id
        room = slot.max_length - 2 - num_tokens
        if room < 1:
            raise MinorityPromptError(
                f"{num_tokens} placeholder tokens leave no room for the prompt in "
                f"{slot.max_length} tokens; use fewer tokens."
            )

        rows, positions = [], []
        for prompt in prompts:
            content = tokenizer(prompt, add_special_tokens=False, verbose=False).input_ids
            if len(content) > room:
                self._warn_truncation(prompt, len(content), room)
                content = content[:room]
            slots_ids = [placeholder_id] * num_tokens
            if position == "end":
                body = content + slots_ids
                first = 1 + len(content)
            else:
                body = slots_ids + content
                first = 1
            ids = [bos] + body + [eos]
            ids += [pad] * (slot.max_length - len(ids))
            rows.append(ids)
            positions.append(list(range(first, first + num_tokens)))

        input_ids = torch.tensor(rows, dtype=torch.long)
        placeholder_positions = torch.tensor(positions, dtype=torch.long) if num_tokens else None
        return TokenLayout(input_ids, placeholder_positions)

    def _warn_truncation(self, prompt: str, length: int, room: int) -> None:
        if self._warned_truncation:
            return
        self._warned_truncation = True
        logger.warning(
            "Prompt %r has %d tokens; the text encoder takes %d besides the placeholder, so "
            "the prompt is truncated and the placeholder kept. Later truncations are not logged.",
            prompt[:80],
            length,
            room,
        )

    # -- encoding ------------------------------------------------------------------------

    def _run_slot(
        self, slot: EncoderSlot, layout: TokenLayout, vectors: Tensor | None
    ) -> tuple[Tensor, Tensor | None]:
        embedding_layer = slot.text_encoder.get_input_embeddings()
        handle = None
        if vectors is not None:
            if layout.placeholder_positions is None:
                raise MinorityPromptError("Vectors were given for a layout without placeholder.")
            rows = (
                torch.arange(vectors.shape[0]).unsqueeze(1).expand_as(layout.placeholder_positions)
            )
            positions = layout.placeholder_positions

            def replace_placeholder_embeddings(module, inputs, output):
                index = (rows.to(output.device), positions.to(output.device))
                return output.index_put(index, vectors.to(output.dtype))

            handle = embedding_layer.register_forward_hook(replace_placeholder_embeddings)
        try:
            input_ids = layout.input_ids.to(slot.text_encoder.device)
            if slot.hidden_state_index is None:
                output = slot.text_encoder(input_ids)
                return output[0], None
            output = slot.text_encoder(input_ids, output_hidden_states=True)
            pooled = output[0] if slot.provides_pooled else None
            return output.hidden_states[slot.hidden_state_index], pooled
        finally:
            if handle is not None:
                handle.remove()

    def encode(
        self,
        prompts: Sequence[str],
        layouts: Sequence[TokenLayout] | None = None,
        vectors: Sequence[Tensor] | None = None,
        size: tuple[int, int] | None = None,
    ) -> Conditioning:
        """Encode `prompts`, with `vectors[k]` at the placeholders of `layouts[k]` if given.

        Args:
            prompts: One prompt per sample.
            layouts: One token layout per encoder slot; built without placeholder if `None`.
            vectors: One tensor per encoder slot, shape `(batch, num_tokens, dim_k)`.
            size: `(height, width)` in pixels for SDXL's time ids; the model default if `None`.
        """
        if layouts is None:
            layouts = [self.layout(slot, prompts) for slot in self.slots]
        hidden, pooled = [], None
        for index, slot in enumerate(self.slots):
            slot_vectors = None if vectors is None else vectors[index]
            states, slot_pooled = self._run_slot(slot, layouts[index], slot_vectors)
            hidden.append(states)
            if slot_pooled is not None:
                pooled = slot_pooled

        prompt_embeds = torch.cat(hidden, dim=-1) if len(hidden) > 1 else hidden[0]
        prompt_embeds = prompt_embeds.to(device=self.device, dtype=self.dtype)
        if not self.is_sdxl:
            return Conditioning(prompt_embeds)
        return Conditioning(
            prompt_embeds,
            pooled.to(device=self.device, dtype=self.dtype),
            self.time_ids(len(prompts), size),
        )

    def time_ids(self, batch_size: int, size: tuple[int, int] | None = None) -> Tensor:
        """SDXL's `(original size, crop top-left, target size)` with no crop."""
        height, width = size or self.default_size or (1024, 1024)
        row = torch.tensor([[height, width, 0, 0, height, width]], dtype=self.dtype)
        return row.repeat(batch_size, 1).to(self.device)

    def encode_negative(
        self,
        negative_prompts: Sequence[str] | None,
        batch_size: int,
        size: tuple[int, int] | None = None,
    ) -> Conditioning:
        """Encode the unconditional branch as the pipeline builds it.

        SDXL checkpoints with `force_zeros_for_empty_prompt` use zero embeddings when no
        negative prompt is given; other models encode the empty prompt.
        """
        if negative_prompts is None and self.force_zeros_for_empty_prompt:
            reference = self.encode([""] * batch_size, size=size)
            return Conditioning(
                torch.zeros_like(reference.prompt_embeds),
                torch.zeros_like(reference.pooled_prompt_embeds),
                reference.add_time_ids,
            )
        if negative_prompts is None:
            negative_prompts = [""] * batch_size
        if len(negative_prompts) != batch_size:
            raise MinorityPromptError(
                f"{len(negative_prompts)} negative prompts for {batch_size} prompts; give one "
                "negative prompt per prompt or a single string."
            )
        return self.encode(list(negative_prompts), size=size)
