"""Input embeddings and output heads of the GPT (``Embed.safetensors``).

See docs/architecture.md, "Embeddings and heads".
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import weight_norm


class Embed(nn.Module):
    """Text and code embeddings, and the weight-normalised text and code heads.

    Args:
        hidden_size: H, the GPT hidden size.
        num_text_tokens: V_text, the text vocabulary.
        num_audio_tokens: V_code, codes per codebook.
        num_vq: number of codebooks.
    """

    def __init__(
        self, hidden_size: int, num_text_tokens: int, num_audio_tokens: int, num_vq: int
    ) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.num_vq = num_vq
        self.num_audio_tokens = num_audio_tokens
        self.num_text_tokens = num_text_tokens
        self.emb_text = nn.Embedding(num_text_tokens, hidden_size)
        self.emb_code = nn.ModuleList(
            nn.Embedding(num_audio_tokens, hidden_size) for _ in range(num_vq)
        )
        self.head_text = weight_norm(nn.Linear(hidden_size, num_text_tokens, bias=False), dim=0)
        self.head_code = nn.ModuleList(
            weight_norm(nn.Linear(hidden_size, num_audio_tokens, bias=False), dim=0)
            for _ in range(num_vq)
        )
        #: the code heads stacked (num_vq · V_code, H), built by :meth:`fold_weight_norm`
        #: (not saved: the file keeps the separate heads).
        self.register_buffer("code_head_weight", None, persistent=False)
        #: a module replacing the stacked product (e.g. int8 weights), set by the engine.
        self.code_head: Optional[nn.Module] = None

    def fold_weight_norm(self) -> None:
        """Replace each head's parametrisation by its computed weight (g · v / ‖v‖ row-wise)
        and stack the code heads into one matrix.

        Done once after loading, so heads are plain linear layers on the hot path and the code
        pass computes its four heads in one matrix product.
        """
        for head in [self.head_text, *self.head_code]:
            if parametrize.is_parametrized(head, "weight"):
                parametrize.remove_parametrizations(head, "weight", leave_parametrized=True)
        stacked = torch.cat([head.weight.detach() for head in self.head_code], 0)
        self.code_head_weight = stacked

    def embed_text(self, ids: torch.Tensor) -> torch.Tensor:
        """(...,) text ids -> (..., H)."""
        return self.emb_text(ids)

    def embed_code(self, ids: torch.Tensor) -> torch.Tensor:
        """(..., num_vq) codes -> (..., H): the sum of each codebook's embedding."""
        return torch.stack([self.emb_code[i](ids[..., i]) for i in range(self.num_vq)], dim=-2).sum(
            -2
        )

    def forward(self, input_ids: torch.Tensor, text_mask: torch.Tensor) -> torch.Tensor:
        """Input embeddings of a prompt.

        Args:
            input_ids: (B, T, num_vq) ids; text positions repeat the text id in every slot.
            text_mask: (B, T) bool, True where the position holds a text token.

        Returns:
            (B, T, H): ``emb_text`` at text positions, the code sum elsewhere; each table is
            looked up only at its own positions.
        """
        b, t, _ = input_ids.shape
        out = torch.empty(
            b, t, self.hidden_size, dtype=self.emb_text.weight.dtype, device=input_ids.device
        )
        text_mask = text_mask.bool()
        out[text_mask] = self.embed_text(input_ids[text_mask][:, 0])
        out[~text_mask] = self.embed_code(input_ids[~text_mask])
        return out

    def text_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """(B, H) -> (B, V_text)."""
        return self.head_text(hidden)

    def code_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """(B, H) -> (B · num_vq, V_code), one row per (item, codebook), item-major."""
        if self.code_head is not None:
            logits = self.code_head(hidden)
        elif self.code_head_weight is not None:
            w = self.code_head_weight
            logits = F.linear(hidden.to(w.dtype), w)
        else:
            logits = torch.stack([head(hidden) for head in self.head_code], dim=1)
        return logits.reshape(-1, self.num_audio_tokens)
