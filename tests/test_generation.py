"""The generation loop's rules that the conformance cases do not reach."""

from __future__ import annotations

import torch

from chattts.generation.engine import PassHeads
from chattts.generation.sampling import ItemSampling, RowSampler


def _eos_first_heads(chat, eos_on_first_calls: int):
    """Code-pass heads whose first ``eos_on_first_calls`` logit calls make item 0 draw EOS."""
    real = chat.models.engine.code_heads()
    calls = {"n": 0}

    def logits(h):
        out = real.logits(h)
        if calls["n"] < eos_on_first_calls:
            out[: real.heads, :] = -1e4
            out[: real.heads, real.eos_id] = 1e4
        else:
            out[:, real.eos_id] = -1e4
        calls["n"] += 1
        return out

    return PassHeads(real.heads, real.vocab, real.eos_id, real.embed_tokens, logits, True), calls


def _prompt(chat, spk, n=2):
    from chattts import InferCodeParams

    return chat.pipeline.passes.code_inputs(
        ["hello world", "chat speech"][:n], InferCodeParams(spk_emb=spk)
    )


def test_ensure_non_empty_restarts_without_seed(chat, spk):
    embeds, mask = _prompt(chat, spk)
    heads, calls = _eos_first_heads(chat, eos_on_first_calls=1)
    items = [ItemSampling(max_new_token=6)] * 2
    states = list(chat.models.engine.steps(embeds, mask, heads, items, ensure_non_empty=True))
    final = states[-1]
    assert final.restarts == 1
    assert final.lengths.tolist() == [6, 6]


def test_seeded_item_ending_at_step_zero_gives_empty_item_and_the_rest_carries_on(chat, spk):
    embeds, mask = _prompt(chat, spk)
    heads, _ = _eos_first_heads(chat, eos_on_first_calls=1)
    items = [ItemSampling(max_new_token=6)] * 2
    states = list(
        chat.models.engine.steps(embeds, mask, heads, items, batch_seed=3, ensure_non_empty=True)
    )
    final = states[-1]
    assert final.restarts == 0
    assert final.lengths.tolist() == [0, 6]
    assert final.finished.tolist() == [True, True]


def test_min_new_token_masks_eos(chat, spk):
    embeds, mask = _prompt(chat, spk, n=1)
    heads, _ = _eos_first_heads(chat, eos_on_first_calls=100)
    items = [ItemSampling(max_new_token=8, min_new_token=5)]
    final = list(chat.models.engine.steps(embeds, mask, heads, items, batch_seed=1))[-1]
    assert final.lengths.tolist() == [5]


def test_repetition_penalty_window_and_sign_rule():
    sampler = RowSampler.for_items(
        [ItemSampling(temperature=1.0, top_p=None, top_k=None, repetition_penalty=2.0)],
        heads=1,
        vocab=4,
        eos_id=3,
        device=torch.device("cpu"),
    )
    for token in [0] * 20 + [1]:  # token 0: 15 times in the last 16, token 1 once
        sampler.record(torch.tensor([token]))
    logits = torch.tensor([[1.0, -1.0, 1.0, 0.5]])
    out = sampler.process(logits.clone())
    assert torch.allclose(out, torch.tensor([[1.0 / 2**15, -1.0 * 2, 1.0, 0.5]]))


def test_top_p_and_top_k_keep_at_least_three():
    sampler = RowSampler.for_items(
        [ItemSampling(temperature=1.0, top_p=0.01, top_k=1)],
        heads=1,
        vocab=6,
        eos_id=5,
        device=torch.device("cpu"),
    )
    logits = torch.tensor([[5.0, 4.0, 3.0, 2.0, 1.0, 0.0]])
    out = sampler.process(logits.clone())
    assert torch.isfinite(out).sum() == 3 and torch.isfinite(out[0, :3]).all()


def test_per_item_seed_is_independent_of_the_batch():
    probs_logits = torch.randn(3 * 4, 50)
    items = [ItemSampling(seed=s) for s in (5, 6, 7)]
    batch = RowSampler.for_items(items, 4, 50, 49, torch.device("cpu")).draw(probs_logits.clone())
    for i, it in enumerate(items):
        alone = RowSampler.for_items([it], 4, 50, 49, torch.device("cpu")).draw(
            probs_logits[i * 4 : (i + 1) * 4].clone()
        )
        assert torch.equal(batch[i * 4 : (i + 1) * 4], alone)


def test_rows_at_different_steps_keep_their_own_step_window_and_eos_rule():
    """A row that joins later counts its own steps (min_new_token, penalty window), and a row
    moved into a gap (another row left) takes its state along."""
    cpu = torch.device("cpu")
    plain = dict(temperature=1.0, top_p=None, top_k=None)
    sampler = RowSampler(heads=1, vocab=4, eos_id=3, device=cpu, max_rows=3)
    sampler.set(0, ItemSampling(**plain, repetition_penalty=2.0))
    for _ in range(3):
        sampler.record(torch.tensor([0]))
    sampler.set(1, ItemSampling(**plain, min_new_token=2))
    ones = torch.ones(2, 4)
    out = sampler.process(ones.clone())
    assert out[0].tolist() == [1.0 / 8, 1.0, 1.0, 1.0]  # three 0s in its window
    assert out[1].tolist() == [1.0, 1.0, 1.0, float("-inf")]  # its step 0 < min_new_token
    sampler.record(torch.tensor([1, 2]))
    sampler.record(torch.tensor([1, 2]))
    assert torch.isfinite(sampler.process(ones.clone())[1]).all()  # its step 2: EOS allowed
    sampler.set(2, ItemSampling(**plain, min_new_token=9))
    sampler.move(2, 0)  # row 0 leaves, the last row takes its place with its own state
    out = sampler.process(ones.clone())
    assert out[0].tolist() == [1.0, 1.0, 1.0, float("-inf")] and out[1].tolist() == [1.0] * 4
    sampler.set(2, ItemSampling(**plain, repetition_penalty=2.0))
    sampler.record(torch.tensor([3, 3, 2]))
    sampler.move(2, 1)
    assert sampler.process(torch.ones(2, 4))[1].tolist() == [1.0, 1.0, 0.5, 1.0]
