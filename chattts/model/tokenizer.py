"""The BERT WordPiece tokenizer of ChatTTS and the batch layout of prompts.

See docs/architecture.md, "Tokenizer".
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional, Union

import torch

from ..errors import AssetNotFoundError, WeightsError


@dataclass
class EncodedBatch:
    """A left-padded batch of prompts.

    Attributes:
        input_ids: (B, T, num_vq) int64; a text id is repeated in every slot, prompt codes
            (``spk_smp``) fill slot i with codebook i.
        attention_mask: (B, T) int64, 1 on real tokens, 0 on left padding.
        text_mask: (B, T) bool, True where the position holds a text token.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    text_mask: torch.Tensor


class Tokenizer:
    """Wraps ``BertTokenizerFast`` (21178 ids for the official files)."""

    def __init__(self, path: str) -> None:
        from transformers import BertTokenizerFast

        if not os.path.isfile(os.path.join(path, "tokenizer.json")):
            raise AssetNotFoundError(
                f"model file not found: {os.path.join(path, 'tokenizer.json')}"
            )
        try:
            self._tok = BertTokenizerFast.from_pretrained(path)
        except Exception as e:  # tokenizers raises plain Exceptions for corrupt files
            raise WeightsError(f"{path}: cannot load the tokenizer ({e})") from e
        self.vocab_size = len(self._tok)
        self.spk_emb_id = self.token_id("[spk_emb]")
        self.break_0_id = self.token_id("[break_0]")
        self.eos_refine_id = self.token_id("[Ebreak]")

    def token_id(self, token: str) -> int:
        """Id of a special token such as ``[spk_emb]``; raises when the vocabulary lacks it."""
        tid = self._tok.convert_tokens_to_ids(token)
        if tid is None or tid == self._tok.unk_token_id:
            raise WeightsError(f"the tokenizer has no token {token!r}")
        return int(tid)

    def encode_ids(self, text: str) -> list[int]:
        """Ids of one string, no special tokens added."""
        return self._tok(text, add_special_tokens=False)["input_ids"]

    def encode(
        self,
        texts: list[str],
        num_vq: int,
        prompt_codes: Union[None, torch.Tensor, list[Optional[torch.Tensor]]] = None,
        device: Union[torch.device, str] = "cpu",
    ) -> EncodedBatch:
        """Tokenize each text alone, append its prompt codes, left-pad with id 0.

        ``prompt_codes``: one (num_vq, P) tensor for every row, or one (or None) per row; a row
        is [padding, text ids, codes], so every row ends at the same position.
        """
        rows = [self.encode_ids(t) for t in texts]
        if prompt_codes is None or isinstance(prompt_codes, torch.Tensor):
            prompt_codes = [prompt_codes] * len(rows)
        if len(prompt_codes) != len(rows):
            raise ValueError("prompt_codes needs one entry per text")
        plen = [0 if c is None else c.shape[1] for c in prompt_codes]
        width = max(len(r) + p for r, p in zip(rows, plen, strict=True))
        b = len(rows)
        ids = torch.zeros(b, width, num_vq, dtype=torch.long)
        attn = torch.zeros(b, width, dtype=torch.long)
        text_mask = torch.zeros(b, width, dtype=torch.bool)
        for i, (row, codes) in enumerate(zip(rows, prompt_codes, strict=True)):
            start, end = width - plen[i] - len(row), width - plen[i]
            ids[i, start:end] = torch.tensor(row, dtype=torch.long)[:, None]
            attn[i, start:] = 1
            text_mask[i, start:end] = True
            if codes is not None:
                ids[i, end:] = codes.long().t()
        return EncodedBatch(ids.to(device), attn.to(device), text_mask.to(device))

    def decode(self, batch: list[list[int]]) -> list[str]:
        """Ids -> strings as BERT decoding gives them (word pieces joined, spaces between)."""
        return self._tok.batch_decode(batch)
