"""Text conditioning passed to a UNet: token embeddings plus SDXL's extra vectors."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor


@dataclass(frozen=True)
class Conditioning:
    """The conditioning of one branch (conditional or unconditional) for a batch.

    Attributes:
        prompt_embeds: Token embeddings, shape `(batch, sequence, dim)`; for SDXL the two
            encoders' penultimate hidden states concatenated on the last axis.
        pooled_prompt_embeds: SDXL's pooled vector from the second encoder's projection,
            shape `(batch, projection_dim)`; `None` for SD 1.x and 2.x.
        add_time_ids: SDXL's size and crop conditioning, shape `(batch, 6)`; `None` otherwise.
    """

    prompt_embeds: Tensor
    pooled_prompt_embeds: Tensor | None = None
    add_time_ids: Tensor | None = None

    @property
    def batch_size(self) -> int:
        return self.prompt_embeds.shape[0]

    def unet_kwargs(self) -> dict:
        """Keyword arguments for `UNet2DConditionModel.forward`."""
        kwargs: dict = {"encoder_hidden_states": self.prompt_embeds}
        if self.pooled_prompt_embeds is not None:
            kwargs["added_cond_kwargs"] = {
                "text_embeds": self.pooled_prompt_embeds,
                "time_ids": self.add_time_ids,
            }
        return kwargs

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None):
        def move(tensor: Tensor | None) -> Tensor | None:
            return None if tensor is None else tensor.to(device=device, dtype=dtype)

        return Conditioning(
            move(self.prompt_embeds), move(self.pooled_prompt_embeds), move(self.add_time_ids)
        )

    def detach(self) -> Conditioning:
        def cut(tensor: Tensor | None) -> Tensor | None:
            return None if tensor is None else tensor.detach()

        return Conditioning(
            cut(self.prompt_embeds), cut(self.pooled_prompt_embeds), cut(self.add_time_ids)
        )

    def select(self, index: Tensor | slice | list[int]) -> Conditioning:
        """Rows of the batch at `index`."""

        def take(tensor: Tensor | None) -> Tensor | None:
            return None if tensor is None else tensor[index]

        return Conditioning(
            take(self.prompt_embeds), take(self.pooled_prompt_embeds), take(self.add_time_ids)
        )

    def with_embeds(
        self, prompt_embeds: Tensor, pooled_prompt_embeds: Tensor | None
    ) -> Conditioning:
        return replace(self, prompt_embeds=prompt_embeds, pooled_prompt_embeds=pooled_prompt_embeds)

    @staticmethod
    def cat(parts: list[Conditioning]) -> Conditioning:
        """Concatenate along the batch axis, as CFG does for `[unconditional; conditional]`."""

        def join(tensors: list[Tensor | None]) -> Tensor | None:
            if any(tensor is None for tensor in tensors):
                return None
            return torch.cat(tensors)  # type: ignore[arg-type]

        return Conditioning(
            torch.cat([part.prompt_embeds for part in parts]),
            join([part.pooled_prompt_embeds for part in parts]),
            join([part.add_time_ids for part in parts]),
        )
