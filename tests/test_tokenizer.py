"""The tokenizer wrapper, on the fixture, the factory's synthetic one and the official files."""

from __future__ import annotations

import os

import pytest
import torch

from chattts.assets import SHA256_MAP, sha256_file
from chattts.model.tokenizer import Tokenizer
from chattts.testing import SPECIAL_TOKENS, make_random_checkpoint

OFFICIAL = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "chattts-tokenizer")


def test_left_padding_and_prompt_codes(tiny_root):
    tok = Tokenizer(os.path.join(tiny_root, "asset", "tokenizer"))
    codes = torch.tensor([[1, 2], [3, 4], [5, 6], [7, 8]])
    batch = tok.encode(["hello world", "hello"], num_vq=4, prompt_codes=codes)
    n_long = len(tok.encode_ids("hello world"))
    n_short = len(tok.encode_ids("hello"))
    assert batch.input_ids.shape == (2, n_long + 2, 4)
    assert batch.attention_mask[1].tolist() == [0] * (n_long - n_short) + [1] * (n_short + 2)
    assert batch.text_mask[1].tolist() == [False] * (n_long - n_short) + [True] * n_short + [
        False,
        False,
    ]
    assert batch.input_ids[0, -2:].tolist() == [[1, 3, 5, 7], [2, 4, 6, 8]]
    ids = batch.input_ids[0, :n_long]
    assert (ids == ids[:, :1]).all(), "a text id is repeated in every slot"


def test_factory_tokenizer_has_the_official_special_tokens(tmp_path):
    root = make_random_checkpoint(str(tmp_path / "m"), "tiny")
    tok = Tokenizer(os.path.join(root, "asset", "tokenizer"))
    assert tok.vocab_size == 170
    first = tok.token_id(SPECIAL_TOKENS[0])
    assert [tok.token_id(t) for t in SPECIAL_TOKENS] == list(range(first, first + 50))
    assert first + 50 == tok.vocab_size


def test_missing_special_token_is_an_error(tiny_root):
    from chattts.errors import WeightsError

    tok = Tokenizer(os.path.join(tiny_root, "asset", "tokenizer"))
    with pytest.raises(WeightsError, match="no token"):
        tok.token_id("[not_a_token]")


@pytest.mark.skipif(not os.path.isdir(OFFICIAL), reason="official tokenizer files not beside")
def test_official_tokenizer_files():
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        assert sha256_file(os.path.join(OFFICIAL, name)) == SHA256_MAP[f"asset/tokenizer/{name}"]
    tok = Tokenizer(OFFICIAL)
    assert tok.vocab_size == 21178
    assert [tok.token_id(t) for t in SPECIAL_TOKENS] == list(range(21128, 21178))
    assert tok.break_0_id == 21128 + SPECIAL_TOKENS.index("[break_0]")
    ids = tok.encode_ids("[Stts][spk_emb][speed_5]你好，World[Ptts]")
    assert ids[:3] == [tok.token_id("[Stts]"), tok.spk_emb_id, tok.token_id("[speed_5]")]
    assert tok.decode([ids])[0].replace(" ", "").startswith("[Stts][spk_emb][speed_5]你好，world")
