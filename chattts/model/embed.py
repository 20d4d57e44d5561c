"""Input embeddings and output heads of the GPT (``Embed.safetensors``).

:class:`EmbedFile` is the file's layout (weight-normalised heads, as the file stores them);
:class:`Embed` is what runs: the same embeddings, the heads folded once into plain weights,
the code heads stacked into one product, and the heads in int8 when asked, all built by its
constructor (or :meth:`Embed.from_file`). See docs/architecture.md, "Embeddings and heads".
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import weight_norm

from .loading import load_module, release_free_memory
from .quant import Int8Linear


class EmbedFile(nn.Module):
    """The tensors of ``Embed.safetensors`` with the file's names: ``emb_text``, ``emb_code.{i}``
    and the weight-normalised ``head_text`` and ``head_code.{i}`` (g and v of each head).

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
        self.emb_text = nn.Embedding(num_text_tokens, hidden_size)
        self.emb_code = nn.ModuleList(
            nn.Embedding(num_audio_tokens, hidden_size) for _ in range(num_vq)
        )
        self.head_text = weight_norm(nn.Linear(hidden_size, num_text_tokens, bias=False), dim=0)
        self.head_code = nn.ModuleList(
            weight_norm(nn.Linear(hidden_size, num_audio_tokens, bias=False), dim=0)
            for _ in range(num_vq)
        )


def _folded(head: nn.Linear) -> nn.Linear:
    """``head`` with its weight-norm parametrisation replaced by the weight it computes
    (g · v / ‖v‖ row-wise), in place."""
    if parametrize.is_parametrized(head, "weight"):
        parametrize.remove_parametrizations(head, "weight", leave_parametrized=True)
    return head


class Embed(nn.Module):
    """Text and code embeddings, the text head and the stacked code heads, ready to run.

    The heads are folded from their weight-normalised form once, here; the ``num_vq`` code
    heads are one (num_vq · V_code, H) product (:attr:`code_head`); ``head_code`` keeps each
    codebook's head as a view of it. With ``int8_text_head`` / ``int8_code_heads`` those heads
    are :class:`chattts.model.quant.Int8Linear` modules (CPU, float32 activations).

    Args:
        hidden_size: H, the GPT hidden size.
        num_text_tokens: V_text, the text vocabulary.
        num_audio_tokens: V_code, codes per codebook.
        num_vq: number of codebooks.
        int8_text_head: the text head in int8.
        int8_code_heads: the stacked code heads in int8.
        weights: the loaded file (its modules become this Embed's, so it is consumed);
            default: a new, randomly initialised :class:`EmbedFile`.
    """

    def __init__(
        self,
        hidden_size: int,
        num_text_tokens: int,
        num_audio_tokens: int,
        num_vq: int,
        *,
        int8_text_head: bool = False,
        int8_code_heads: bool = False,
        weights: Optional[EmbedFile] = None,
    ) -> None:
        super().__init__()
        file = weights
        if file is None:
            file = EmbedFile(hidden_size, num_text_tokens, num_audio_tokens, num_vq)
        got = (file.emb_text.num_embeddings, file.emb_text.embedding_dim, len(file.emb_code))
        if got != (num_text_tokens, hidden_size, num_vq):
            raise ValueError(
                f"weights for (V_text, H, num_vq) = {got}, "
                f"not {(num_text_tokens, hidden_size, num_vq)}"
            )
        self.hidden_size = hidden_size
        self.num_vq = num_vq
        self.num_audio_tokens = num_audio_tokens
        self.num_text_tokens = num_text_tokens
        self.emb_text = file.emb_text
        self.emb_code = file.emb_code
        text = _folded(file.head_text)
        stacked_weight = torch.cat([_folded(h).weight.detach() for h in file.head_code], 0)
        del file
        stacked = nn.Linear(hidden_size, num_vq * num_audio_tokens, bias=False, device="meta")
        stacked.weight = nn.Parameter(stacked_weight, requires_grad=False)
        heads = []
        for part in stacked_weight.split(num_audio_tokens):
            head = nn.Linear(hidden_size, num_audio_tokens, bias=False, device="meta")
            head.weight = nn.Parameter(part, requires_grad=False)
            heads.append(head)
        #: each codebook's head (V_code, H): views of the stacked weight
        self.head_code = nn.ModuleList(heads)
        #: the text head: (B, H) -> (B, V_text)
        self.head_text: nn.Module = Int8Linear(text) if int8_text_head else text
        #: the code heads as one product: (B, H) -> (B, num_vq · V_code)
        self.code_head: nn.Module = Int8Linear(stacked) if int8_code_heads else stacked
        if int8_text_head or int8_code_heads:
            release_free_memory()  # the float text head is freed: give it back to the OS
        self.eval().requires_grad_(False)

    @classmethod
    def from_file(
        cls,
        path: str,
        hidden_size: int,
        num_text_tokens: int,
        num_audio_tokens: int,
        num_vq: int,
        *,
        int8_text_head: bool = False,
        int8_code_heads: bool = False,
    ) -> Embed:
        """Read ``Embed.safetensors`` strictly (errors name the file and the tensor) and build
        the Embed with its options."""
        with torch.device("meta"):  # shapes only: the file's tensors are assigned
            file = EmbedFile(hidden_size, num_text_tokens, num_audio_tokens, num_vq)
        load_module(file, path)
        return cls(
            hidden_size,
            num_text_tokens,
            num_audio_tokens,
            num_vq,
            int8_text_head=int8_text_head,
            int8_code_heads=int8_code_heads,
            weights=file,
        )

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the embeddings (the heads' inputs are cast to it)."""
        return self.emb_text.weight.dtype

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
        out = torch.empty(b, t, self.hidden_size, dtype=self.dtype, device=input_ids.device)
        text_mask = text_mask.bool()
        out[text_mask] = self.embed_text(input_ids[text_mask][:, 0])
        out[~text_mask] = self.embed_code(input_ids[~text_mask])
        return out

    def text_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """(B, H) -> (B, V_text)."""
        return self.head_text(hidden)

    def code_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """(B, H) -> (B · num_vq, V_code), one row per (item, codebook), item-major."""
        return self.code_head(hidden.to(self.dtype)).reshape(-1, self.num_audio_tokens)
