"""Property tests (hypothesis): the parameter validation accepts exactly the documented ranges,
and ``infer`` on arbitrary unicode gives a result or a chattts error, never anything else."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import chattts
from chattts import InferCodeParams, RefineTextParams
from chattts.errors import ChatTTSError, InputTypeError, ParameterError
from chattts.text import Normalizer
from chattts.validation import (
    MAX_NEW_TOKEN,
    MAX_REPETITION_PENALTY,
    MAX_SEED,
    MAX_TEMPERATURE,
    MIN_REPETITION_PENALTY,
    MIN_TEMPERATURE,
    check_code_params,
    check_refine_params,
)

# anything a careless caller may put in a numeric field
anything = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=-2.0, max_value=2.0),
    st.sampled_from([0, 1, 5e-324, 1e-300, 1e-4, 0.7, 1.0, 100.0, 2**63 - 1, 2**63]),
    st.text(max_size=3),
)


def _real(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _valid(f: dict) -> bool:
    """The documented ranges, written independently of chattts.validation."""
    t, p, k, r = f["temperature"], f["top_P"], f["top_K"], f["repetition_penalty"]
    mx, mn, seed = f["max_new_token"], f["min_new_token"], f["manual_seed"]

    def is_int(v):
        return isinstance(v, int) and not isinstance(v, bool)

    return (
        _real(t)
        and MIN_TEMPERATURE <= t <= MAX_TEMPERATURE
        and (p is None or (_real(p) and 0 < p <= 1))
        and (k is None or (is_int(k) and k >= 1 and k <= 1 << 20))
        and _real(r)
        and MIN_REPETITION_PENALTY <= r <= MAX_REPETITION_PENALTY
        and is_int(mx)
        and 1 <= mx <= MAX_NEW_TOKEN
        and is_int(mn)
        and 0 <= mn <= mx
        and (seed is None or (is_int(seed) and 0 <= seed <= MAX_SEED))
    )


fields = st.fixed_dictionaries(
    {
        "temperature": anything,
        "top_P": anything,
        "top_K": anything,
        "repetition_penalty": anything,
        "max_new_token": st.one_of(anything, st.integers(1, 5000)),
        "min_new_token": st.one_of(anything, st.integers(0, 100)),
        "manual_seed": anything,
    }
)


@settings(max_examples=600, deadline=None)
@given(fields)
def test_params_validation_accepts_exactly_the_documented_ranges(f):
    for cls, check in (
        (InferCodeParams, check_code_params),
        (RefineTextParams, check_refine_params),
    ):
        try:
            check(cls(**f))
        except (ParameterError, InputTypeError) as e:
            assert not _valid(f), f"valid fields refused: {e}"
            assert isinstance(e, (ValueError, TypeError))
        else:
            assert _valid(f), f"invalid fields accepted: {f}"


@settings(max_examples=200, deadline=None)
@given(st.lists(anything, min_size=0, max_size=6))
def test_a_list_of_temperatures_is_checked_value_by_value(temps):
    ok = bool(temps) and all(_real(t) and MIN_TEMPERATURE <= t <= MAX_TEMPERATURE for t in temps)
    try:
        check_code_params(InferCodeParams(temperature=temps))
    except (ParameterError, InputTypeError):
        assert not ok
    else:
        assert ok


@pytest.fixture(scope="module")
def plain_chat(tiny_root) -> chattts.Chat:
    """The tiny model with only the built-in character rules (no NeMo/WeTextProcessing), so
    that hundreds of examples stay fast."""
    c = chattts.Chat()
    c.normalizer = Normalizer(builtin_normalizers=False)
    c.load(source="custom", custom_path=tiny_root, verify=False, device="cpu")
    return c


texts = st.one_of(
    st.text(max_size=60),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=40),
    st.lists(st.text(max_size=20), max_size=3),
    st.from_regex(r"(\[[a-z_0-9]{0,10}\]|[a-z 。.]){0,30}", fullmatch=True),
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=texts, refine=st.booleans(), seed=st.integers(0, 2**63 - 1))
def test_infer_on_arbitrary_unicode(plain_chat, text, refine, seed):
    code = InferCodeParams(max_new_token=6, manual_seed=seed, show_tqdm=False)
    ref = RefineTextParams(max_new_token=6, manual_seed=seed, show_tqdm=False)
    try:
        out = plain_chat.infer(
            text, skip_refine_text=not refine, params_infer_code=code, params_refine_text=ref
        )
    except ChatTTSError:
        return
    assert isinstance(out, list)
    assert len(out) <= (1 if isinstance(text, str) else len(text))
    for wav in out:
        assert isinstance(wav, np.ndarray) and wav.dtype == np.float32 and wav.ndim == 1
        assert np.isfinite(wav).all()


@pytest.mark.e2e
@settings(max_examples=30, deadline=None)
@given(st.text(max_size=120))
def test_real_normalisers_on_arbitrary_unicode(text):
    """NeMo and WeTextProcessing on arbitrary unicode: a str back, never a crash."""
    out = Normalizer()(text)
    assert isinstance(out, str)
