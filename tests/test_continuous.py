"""Continuous batching (chattts.generation.run): rows join a running batch at step boundaries and
leave the moment they end, on every backend, and a seeded row draws what it draws alone."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

import chattts
from chattts.errors import BatchFullError, ParameterError
from chattts.generation.build import build_engine
from chattts.generation.engine import Engine, Interrupt, PassHeads
from chattts.generation.sampling import ItemSampling
from chattts.options import EngineOptions

TEXTS = ["hello world", "chat speech model test", "a", "the quick brown fox jumps"]
#: Hidden states of a row in a batch against the same row alone, relative to their largest
#: value: float32 rounding of batched matrix products and of attention over a longer (masked)
#: span. Measured on the tiny model: 7e-7 (torch eager), 6e-7 (torch fixed-shape), 0 (ONNX
#: Runtime, float32 and int8: its kernels compute each row alone).
HIDDEN_TOLERANCE = 1e-5


@pytest.fixture(scope="module", params=["torch", "torch-fixed", "onnxruntime", "onnxruntime-int8"])
def engine(request) -> Engine:
    """The engine of every backend: torch eager, torch's fixed-shape step (uncompiled), the
    float32 ONNX graph and the int8 one."""
    if request.param == "torch-fixed":
        m = request.getfixturevalue("chat").models
        return build_engine(m.gpt, m.embed, m.device, EngineOptions(), fixed_shapes=True)
    name = {"torch": "chat", "onnxruntime": "ort_chat", "onnxruntime-int8": "ort_int8_chat"}
    return request.getfixturevalue(name[request.param]).models.engine


@pytest.fixture(scope="module")
def prompts(chat, spk) -> list[torch.Tensor]:
    """(T_i, H) code-pass prompts of different lengths, each embedded alone."""
    params = chattts.InferCodeParams(spk_emb=spk)
    return [chat.pipeline.passes.code_inputs([t], params)[0][0] for t in TEXTS]


def item(seed: int, n: int, **kw) -> ItemSampling:
    return ItemSampling(seed=seed, max_new_token=n, repetition_penalty=1.05, **kw)


def solo(engine: Engine, heads: PassHeads, embeds: torch.Tensor, sampling: ItemSampling):
    """A row's outputs when it runs alone."""
    with engine.open_run(heads, 1, 128) as run:
        slot = run.add(embeds, sampling)
        out = run.output(slot)
        while run.active:
            run.step()
    return out


def drive(run, joins: dict[int, list], record: list | None = None) -> dict[int, int]:
    """Step ``run`` until no row is left; ``joins``: step -> [(embeds, sampling), ...] added
    before that step. Returns {slot: step it finished}; ``record`` gets each step's events."""
    step, ended = 0, {}
    while run.active or any(s >= step for s in joins):
        for embeds, sampling in joins.get(step, []):
            run.add(embeds, sampling)
        events = run.step()
        if record is not None:
            record.append(events)
        ended.update({e.slot: step for e in events if e.finished})
        step += 1
    return ended


def assert_same_row(got, want, tolerance=HIDDEN_TOLERANCE) -> float:
    assert got.steps == want.steps and got.length == want.length
    assert torch.equal(got.tokens[: got.steps], want.tokens[: want.steps])
    if want.hiddens is None:
        return 0.0
    diff = float((got.hiddens[: got.steps] - want.hiddens[: want.steps]).abs().max())
    scale = float(want.hiddens[: want.steps].abs().max())
    assert diff <= tolerance * scale, f"hidden states differ by {diff} (scale {scale})"
    return diff / scale


def test_rows_joining_at_any_step_draw_their_solo_tokens(engine, prompts):
    heads = engine.code_heads()
    rows = [item(1, 30), item(2, 18), item(3, 12), item(4, 9)]
    alone = [solo(engine, heads, p, s) for p, s in zip(prompts, rows, strict=True)]
    joins = {0: [(prompts[0], rows[0]), (prompts[1], rows[1])]}
    joins[5] = [(prompts[2], rows[2])]
    joins[9] = [(prompts[3], rows[3])]
    with engine.open_run(heads, 4, 128) as run:
        ended = drive(run, joins)
        assert run.active == [] and run.free == 4
    # slots: 0 and 1 first, 2 at step 5, 3 at step 9; each ends at its own step
    joined = [0, 0, 5, 9]
    assert ended == {i: joined[i] + alone[i].steps - 1 for i in range(4)}
    errors = []
    with engine.open_run(heads, 4, 128) as run:
        record: list = []
        drive(run, joins, record)
        outputs = {e.slot: e.output for events in record for e in events}
        for slot, want in enumerate(alone):
            errors.append(assert_same_row(outputs[slot], want))
    kind = "fixed-shape" if engine.static_decode else "eager"
    print(f"{engine.backend.name} ({kind}): batched vs solo hidden states {max(errors):.1e}")


def test_a_finished_row_leaves_at_once_and_a_new_row_takes_its_slot(engine, prompts, monkeypatch):
    heads = engine.code_heads()
    sizes = []
    real_open = engine.backend.open

    def open_session(batch, positions):
        session = real_open(batch, positions)
        real_decode = session.decode
        session.decode = lambda x: sizes.append(x.shape[0]) or real_decode(x)
        return session

    monkeypatch.setattr(engine.backend, "open", open_session)
    with engine.open_run(heads, 2, 64) as run:  # EOS masked: each row ends at max_new_token
        a = run.add(prompts[0], item(1, 3, min_new_token=3))
        b = run.add(prompts[1], item(2, 8, min_new_token=8))
        with pytest.raises(BatchFullError):
            run.add(prompts[2], item(3, 4))
        for _ in range(3):
            events = run.step()
        assert [(e.slot, e.finished) for e in events] == [(a, True), (b, False)]
        assert run.active == [b] and run.free == 1
        c = run.add(prompts[2], item(3, 4, min_new_token=4))
        assert c == a  # the freed slot
        while run.active:
            run.step()
    # two rows decode, then one (the first left), then two again (the third joined)
    assert sizes[:2] == [2, 2] and sizes[2] == 1 and sizes[3:7] == [2, 2, 2, 1]


def test_a_cancelled_row_frees_its_slot_and_the_others_are_untouched(engine, prompts):
    heads = engine.code_heads()
    rows = [item(1, 16), item(2, 16), item(3, 16)]
    alone = [solo(engine, heads, p, s) for p, s in zip(prompts, rows, strict=False)]
    flag = Interrupt()
    with engine.open_run(heads, 3, 64) as run:
        slots = [run.add(prompts[0], rows[0]), run.add(prompts[1], rows[1], flag)]
        slots.append(run.add(prompts[2], rows[2]))
        outputs = [run.output(s) for s in slots]
        for _ in range(4):
            run.step()
        flag.set()
        events = run.step()
        gone = [e for e in events if e.slot == slots[1]]
        assert len(gone) == 1 and gone[0].finished and gone[0].token is None
        assert gone[0].output.cancelled and gone[0].output.steps == 4
        assert run.active == [slots[0], slots[2]] and run.free == 1
        run.remove(slots[2])  # removed by the scheduler: gone at once
        assert run.active == [slots[0]] and outputs[2].cancelled and outputs[2].steps == 5
        with pytest.raises(ValueError, match="no row"):
            run.remove(slots[2])
        while run.active:
            run.step()
    # the row that stayed drew its solo tokens; the others, theirs until they left
    assert_same_row(outputs[0], alone[0])
    for out, want in zip(outputs[1:], alone[1:], strict=True):
        assert torch.equal(out.tokens[: out.steps], want.tokens[: out.steps])
    with engine.open_run(heads, 3, 64) as run:
        keep = run.add(prompts[0], rows[0])
        run.add(prompts[1], rows[1], flag)  # already set: leaves before its first step
        events = run.step()
        assert [e.token is None for e in events] == [True, False] and run.active == [keep]


def test_refine_requests_batch_the_same_way(engine, chat):
    m = chat.models
    heads = engine.refine_heads(m.tokenizer.eos_refine_id)

    def prompt(text: str) -> torch.Tensor:
        batch = m.tokenizer.encode([f"[Sbreak]{text}[Pbreak][oral_2]"], m.config.gpt.num_vq)
        return m.embed(batch.input_ids, batch.text_mask)[0]

    texts = ["hello world", "a somewhat longer sentence to refine", "ok"]
    rows = [item(5, 20, temperature=0.7), item(6, 14, temperature=0.7), item(7, 9)]
    embeds = [prompt(t) for t in texts]
    alone = [solo(engine, heads, e, s) for e, s in zip(embeds, rows, strict=True)]
    with engine.open_run(heads, 3, 96) as run:
        record: list = []
        drive(
            run,
            {0: [(embeds[0], rows[0])], 2: [(embeds[1], rows[1]), (embeds[2], rows[2])]},
            record,
        )
    outputs = {e.slot: e.output for events in record for e in events}
    for slot, want in enumerate(alone):
        assert outputs[slot].hiddens is None
        assert_same_row(outputs[slot], want)


def test_a_static_batch_with_item_seeds_gives_each_item_its_solo_tokens(engine, chat, spk):
    """Engine.steps (Pipeline.synthesize's per-item seeds): a padded batch of prompts of
    different lengths, each item as it is alone."""
    params = [chattts.InferCodeParams(spk_emb=spk, manual_seed=s) for s in (3, 4, 5)]
    embeds, mask = chat.pipeline.passes.code_inputs(TEXTS[:3], params)
    assert not bool(mask.all())  # padded
    heads = engine.code_heads()
    rows = [item(s, n) for s, n in ((3, 14), (4, 9), (5, 11))]
    state = list(engine.steps(embeds, mask, heads, rows))[-1]
    for i, sampling in enumerate(rows):
        alone = solo(engine, heads, embeds[i][mask[i].bool()], sampling)
        assert state.lengths[i] == alone.length
        assert torch.equal(state.item_tokens(i), alone.item_tokens())


def test_prompts_must_fit_the_capacity_and_runs_take_no_rows_after_close(engine, prompts):
    heads = engine.code_heads()
    run = engine.open_run(heads, 2, 32)
    with pytest.raises(ParameterError, match="max_new_token=30"):
        run.add(prompts[1], item(1, 30))
    with pytest.raises(ParameterError):
        run.add(prompts[0], replace(item(1, 3), max_new_token=0))
    with pytest.raises(ParameterError, match=r"\(T, H\)"):
        run.add(prompts[0][None], item(1, 3))
    run.close()
    with pytest.raises(RuntimeError, match="closed"):
        run.step()
    with pytest.raises(RuntimeError, match="closed"):
        run.add(prompts[0], item(1, 3))


@pytest.mark.parametrize("name", ["ort_chat", "ort_int8_chat"])
def test_onnx_kv_buffers_that_grow_under_joining_rows_change_no_row(
    name, prompts, request, monkeypatch
):
    """ONNX Runtime sessions start with FIRST_POSITIONS positions per row and double them as
    rows grow: with 8 at first they grow three times in this run, while rows join at steps 5 and 9
    and leave at their own steps, and every row still draws its solo tokens and hidden states."""
    from chattts.generation import ort_backend

    engine = request.getfixturevalue(name).models.engine
    heads = engine.code_heads()
    rows = [item(1, 30), item(2, 18), item(3, 12), item(4, 9)]
    alone = [solo(engine, heads, p, s) for p, s in zip(prompts, rows, strict=True)]
    monkeypatch.setattr(ort_backend, "FIRST_POSITIONS", 8)
    held = []
    real_open = engine.backend.open

    def open_session(batch, positions):
        session = real_open(batch, positions)
        real_decode = session.decode
        session.decode = lambda x: (real_decode(x), held.append(session.held))[0]
        return session

    monkeypatch.setattr(engine.backend, "open", open_session)
    joins = {0: [(prompts[0], rows[0]), (prompts[1], rows[1])]}
    joins[5], joins[9] = [(prompts[2], rows[2])], [(prompts[3], rows[3])]
    with engine.open_run(heads, 4, 128) as run:
        record: list = []
        drive(run, joins, record)
    outputs = {e.slot: e.output for events in record for e in events}
    for slot, want in enumerate(alone):
        assert_same_row(outputs[slot], want, tolerance=0.0)
    assert held[0] < held[-1] <= 128 and len(set(held)) >= 3  # it grew, within the capacity
