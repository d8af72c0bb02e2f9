"""Tests for jaxfc.schedules against plain-Python formulas."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from jaxfc import schedules
from jaxfc.optim import get_optimizer, learning_rate, set_hyperparams


def ref_warmup_cosine(c, peak, warm, total, init, end):
    if c < warm:
        return init + (peak - init) * c / warm
    p = min(1.0, (c - warm) / (total - warm))
    return end + (peak - end) * 0.5 * (1 + math.cos(math.pi * p))


# (schedule, plain-Python reference)
TABLE = {
    "constant": (schedules.constant(0.3), lambda c: 0.3),
    "step_decay": (schedules.step_decay(0.1, 0.95), lambda c: 0.1 * 0.95**c),
    "step_decay_every": (schedules.step_decay(0.5, 0.5, every=3), lambda c: 0.5 * 0.5 ** (c // 3)),
    "exponential": (
        schedules.exponential_decay(1e-2, 0.5, 10),
        lambda c: 1e-2 * 0.5 ** (c / 10),
    ),
    "exponential_staircase": (
        schedules.exponential_decay(1e-2, 0.5, 10, staircase=True),
        lambda c: 1e-2 * 0.5 ** (c // 10),
    ),
    "warmup_cosine": (
        schedules.warmup_cosine(1.0, 10, 110, init_lr=0.1, end_lr=0.01),
        lambda c: ref_warmup_cosine(c, 1.0, 10, 110, 0.1, 0.01),
    ),
    "cosine_no_warmup": (
        schedules.warmup_cosine(2.0, 0, 50),
        lambda c: ref_warmup_cosine(c, 2.0, 0, 50, 0.0, 0.0),
    ),
}
COUNTS = [0, 1, 2, 3, 5, 9, 10, 11, 29, 60, 109, 110, 111, 500]


@pytest.mark.parametrize("name", sorted(TABLE))
def test_matches_reference(name):
    schedule, ref = TABLE[name]
    eager = np.array([schedule(c) for c in COUNTS])
    jitted = np.array(jax.jit(jax.vmap(schedule))(jnp.asarray(COUNTS)))
    expected = np.array([ref(c) for c in COUNTS])
    assert eager.dtype == np.float32 and jitted.dtype == np.float32
    np.testing.assert_allclose(eager, expected, rtol=2e-6, atol=1e-9)
    np.testing.assert_allclose(jitted, expected, rtol=2e-6, atol=1e-9)


def test_warmup_cosine_landmarks():
    s = schedules.warmup_cosine(1.0, 10, 110, init_lr=0.1, end_lr=0.01)
    assert float(s(0)) == pytest.approx(0.1)
    assert float(s(10)) == pytest.approx(1.0)
    assert float(s(60)) == pytest.approx(0.505)
    assert float(s(110)) == pytest.approx(0.01) and float(s(10_000)) == pytest.approx(0.01)
    assert float(schedules.warmup_cosine(1.0, 0, 10)(0)) == 1.0


def test_negative_count_is_zero():
    s = schedules.step_decay(0.1, 0.5)
    assert float(s(-3)) == pytest.approx(0.1)


@given(st.integers(0, 200), st.integers(0, 200), st.integers(1, 50), st.floats(0.0, 1.0))
def test_warmup_cosine_monotone(c1, c2, warm, end_frac):
    a, b = sorted((c1, c2))
    s = schedules.warmup_cosine(1.0, warm, warm + 100, end_lr=end_frac)
    if b <= warm:
        assert float(s(a)) <= float(s(b)) + 1e-6
    elif a >= warm:
        assert float(s(a)) >= float(s(b)) - 1e-6
    assert -1e-6 <= float(s(b)) <= 1.0 + 1e-6


@given(st.integers(0, 1000), st.floats(0.5, 1.0), st.integers(1, 20))
def test_step_decay_never_increases(c, decay, every):
    s = schedules.step_decay(0.1, decay, every)
    assert float(s(c + 1)) <= float(s(c))


def test_solver_usage_does_not_recompile():
    """The documented pattern: set the rate from a schedule, the jitted step compiles once."""
    schedule = schedules.step_decay(0.1, 0.5)
    opt = get_optimizer("sgd")
    traces = []

    @jax.jit
    def step(p, s, epoch):
        traces.append(1)
        s = set_hyperparams(s, learning_rate=schedule(epoch))
        return opt.update(p, jnp.ones_like(p), s)

    p, s = jnp.zeros(3), opt.init(jnp.zeros(3))
    for epoch in range(4):
        p, s = step(p, s, epoch)
        assert float(learning_rate(s)) == pytest.approx(0.1 * 0.5**epoch)
    assert len(traces) == 1
    np.testing.assert_allclose(p, -(0.1 + 0.05 + 0.025 + 0.0125), rtol=1e-6)


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda: schedules.constant(-1.0), ValueError, "lr"),
        (lambda: schedules.constant(float("inf")), ValueError, "lr"),
        (lambda: schedules.constant("0.1"), TypeError, "lr"),
        (lambda: schedules.step_decay(0.1, 0.0), ValueError, "decay"),
        (lambda: schedules.step_decay(0.1, 0.9, every=0), ValueError, "every"),
        (lambda: schedules.step_decay(0.1, 0.9, every=1.5), TypeError, "every"),
        (lambda: schedules.exponential_decay(0.1, -0.5, 10), ValueError, "decay_rate"),
        (lambda: schedules.exponential_decay(0.1, 0.5, 0), ValueError, "decay_steps"),
        (lambda: schedules.exponential_decay(0.1, 0.5, 10, staircase=1), TypeError, "staircase"),
        (lambda: schedules.warmup_cosine(1.0, 10, 10), ValueError, "total_steps"),
        (lambda: schedules.warmup_cosine(1.0, -1, 10), ValueError, "warmup_steps"),
        (lambda: schedules.warmup_cosine(1.0, 1, 10, end_lr=-0.1), ValueError, "end_lr"),
        (lambda: schedules.warmup_cosine(True, 1, 10), TypeError, "peak_lr"),
        (lambda: schedules.constant(0.1)(jnp.arange(3)), ValueError, "count"),
    ],
)
def test_bad_arguments(make, error, match):
    with pytest.raises(error, match=match):
        make()
