"""Tests for jaxfc.gradcheck: numeric gradients, rel_error, reports and check_backward."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jaxfc.gradcheck import (
    GradCheckReport,
    check_backward,
    compare_trees,
    numerical_gradient,
    numerical_gradient_tree,
    numerical_vjp,
    rel_error,
    require_x64,
)

# Hypothesis examples share the function-scoped x64 context; that is what we want here.
x64_settings = settings(
    max_examples=12, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _normal(seed, shape):
    return jax.random.normal(jax.random.key(seed), shape, jnp.float64)


# ----------------------------------------------------------------- hand-written layer pairs


def affine_forward(x, w, b):
    out = x.reshape(x.shape[0], -1) @ w + b[None, :]
    return out, (x, w)


def affine_backward(dout, cache):
    x, w = cache
    dx = (dout @ w.T).reshape(x.shape)
    dw = x.reshape(x.shape[0], -1).T @ dout
    db = dout.sum(axis=0)
    return dx, dw, db


def affine_backward_bad_db(dout, cache):
    dx, dw, db = affine_backward(dout, cache)
    return dx, dw, 2 * db


def tanh_forward(x):
    out = jnp.tanh(x)
    return out, out


def tanh_backward(dout, cache):
    return dout * (1 - cache**2)


def tanh_backward_bad_sign(dout, cache):
    return -dout * (1 - cache**2)


def power_forward(x, p, *, scale=1.0):
    """A forward with a non-differentiable int input and a keyword argument."""
    out = scale * x**p
    return out, (x, p, scale)


def power_backward(dout, cache):
    x, p, scale = cache
    return dout * scale * p * x ** (p - 1)


def affine_inputs():
    return (_normal(1, (4, 2, 3)), _normal(2, (6, 5)), _normal(3, (5,)))


# ----------------------------------------------------------------- rel_error


@given(
    st.lists(st.floats(-1e3, 1e3), min_size=1, max_size=12),
    st.lists(st.floats(-1e3, 1e3), min_size=1, max_size=12),
)
def test_rel_error_symmetric_and_bounded(a, b):
    n = min(len(a), len(b))
    x, y = np.array(a[:n]), np.array(b[:n])
    assert rel_error(x, y) == rel_error(y, x)
    assert 0.0 <= rel_error(x, y) <= 1.0
    assert rel_error(x, x) == 0.0


@pytest.mark.parametrize(
    "x, y, expected",
    [
        (np.array([1.0, 2.0]), np.array([1.0, 2.0]), 0.0),
        (np.array([1.0, 3.0]), np.array([1.0, 1.0]), 0.5),
        (np.array([0.0]), np.array([1e-9]), 1e-9 / 1e-8),  # 1e-8 floor in the denominator
        (2.0, -2.0, 1.0),
        (np.array([]), np.array([]), 0.0),
    ],
)
def test_rel_error_values(x, y, expected):
    assert rel_error(x, y) == pytest.approx(expected, rel=1e-12)


def test_rel_error_pytrees_take_max_over_leaves():
    x = {"a": np.ones(3), "b": [np.zeros(2), np.array(3.0)]}
    y = {"a": np.ones(3), "b": [np.zeros(2), np.array(1.0)]}
    assert rel_error(x, y) == pytest.approx(0.5)
    assert rel_error(x, x) == 0.0


def test_rel_error_nan_and_mismatches():
    assert np.isnan(rel_error(np.array([1.0, np.nan]), np.array([1.0, 1.0])))
    with pytest.raises(ValueError, match="shapes differ"):
        rel_error(np.ones(3), np.ones((3, 1)))
    with pytest.raises(ValueError, match="structures differ"):
        rel_error({"a": np.ones(1)}, {"b": np.ones(1)})


# ----------------------------------------------------------------- require_x64


def test_require_x64_raises_when_off():
    with jax.enable_x64(False):
        with pytest.raises(RuntimeError, match="enable_x64") as info:
            require_x64()
        assert "JAX_ENABLE_X64=1" in str(info.value)
        with pytest.raises(RuntimeError, match="check_backward"):
            check_backward(tanh_forward, tanh_backward, (jnp.ones(3),))
        with pytest.raises(RuntimeError, match="enable_x64"):
            numerical_gradient(jnp.sum, jnp.ones(3))
        with pytest.raises(RuntimeError, match="enable_x64"):
            numerical_vjp(jnp.sin, jnp.ones(3), jnp.ones(3))


def test_require_x64_passes_inside_fixture(x64):
    require_x64()


# ----------------------------------------------------------------- numerical_gradient

KNOWN = [
    ("sum_sq", lambda x: jnp.sum(x**2), lambda x: 2 * x),
    ("sin", lambda x: jnp.sum(jnp.sin(x)), jnp.cos),
    ("exp_mean", lambda x: jnp.mean(jnp.exp(x / 3)), lambda x: jnp.exp(x / 3) / (3 * x.size)),
]


@pytest.mark.parametrize("name, f, grad", KNOWN, ids=[k[0] for k in KNOWN])
@pytest.mark.parametrize("shape", [(), (7,), (3, 4), (2, 3, 2)])
def test_numerical_gradient_known_functions(x64, name, f, grad, shape):
    x = _normal(0, shape)
    num = numerical_gradient(f, x)
    assert num.shape == x.shape and num.dtype == jnp.float64
    assert rel_error(num, grad(x)) < 1e-8


def test_numerical_gradient_matmul(x64):
    a, c = _normal(1, (5, 4)), _normal(2, (5, 3))
    w = _normal(3, (4, 3))
    num = numerical_gradient(lambda w: jnp.sum((a @ w) * c), w)
    assert rel_error(num, a.T @ c) < 1e-8


@pytest.mark.parametrize("chunk_size", [1, 5, 7, 1024])
def test_numerical_gradient_chunking_matches_single_chunk(x64, chunk_size):
    x = _normal(4, (3, 7))
    f = lambda x: jnp.sum(jnp.tanh(x) * x)
    whole = numerical_gradient(f, x, chunk_size=x.size)
    chunked = numerical_gradient(f, x, chunk_size=chunk_size)
    np.testing.assert_allclose(chunked, whole, rtol=1e-12, atol=1e-14)


def test_numerical_gradient_casts_float32_and_rejects_bad_input(x64):
    x = np.arange(4, dtype=np.float32)
    assert numerical_gradient(lambda x: jnp.sum(x**2), x).dtype == jnp.float64
    with pytest.raises(ValueError, match="scalar"):
        numerical_gradient(jnp.sin, jnp.ones(3))
    with pytest.raises(TypeError, match="floating"):
        numerical_gradient(jnp.sum, jnp.arange(3))
    with pytest.raises(ValueError, match="h must be"):
        numerical_gradient(jnp.sum, jnp.ones(3), h=0.0)
    with pytest.raises(ValueError, match="chunk_size"):
        numerical_gradient(jnp.sum, jnp.ones(3), chunk_size=0)


def test_numerical_gradient_empty_input(x64):
    assert numerical_gradient(jnp.sum, jnp.zeros((0, 3))).shape == (0, 3)


def test_numerical_gradient_tree_matches_jax_grad(x64):
    params = {"w": _normal(1, (3, 2)), "b": _normal(2, (2,)), "extra": [_normal(3, ())]}
    x = _normal(4, (5, 3))

    def loss(p):
        return jnp.sum(jnp.tanh(x @ p["w"] + p["b"][None, :]) ** 2) * p["extra"][0]

    num = numerical_gradient_tree(loss, params)
    assert jax.tree_util.tree_structure(num) == jax.tree_util.tree_structure(params)
    assert rel_error(num, jax.grad(loss)(params)) < 1e-8


# ----------------------------------------------------------------- numerical_vjp

shapes = st.lists(st.integers(1, 4), min_size=1, max_size=3).map(tuple)


@x64_settings
@given(shape=shapes, out_dim=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_numerical_vjp_matches_jax_vjp(x64, shape, out_dim, seed):
    x = _normal(seed, shape)
    w = _normal(seed + 1, (shape[-1], out_dim))
    dout_shape = (*shape[:-1], out_dim)
    dout = _normal(seed + 2, dout_shape)

    def f(x):
        return jnp.tanh(x @ w) * jnp.cos(x).sum(axis=-1, keepdims=True) + jnp.sin(x).mean()

    (expected,) = jax.jit(lambda x, d: jax.vjp(f, x)[1](d))(x, dout)
    assert rel_error(numerical_vjp(f, x, dout), expected) < 1e-7


def test_numerical_vjp_rejects_wrong_dout_shape(x64):
    with pytest.raises(ValueError, match=r"dout shape \(2,\) does not match f\(x\) shape \(3,\)"):
        numerical_vjp(jnp.sin, jnp.ones(3), jnp.ones(2))


# ----------------------------------------------------------------- check_backward

TRANSFORMS = {"eager": lambda f: f, "jit": jax.jit}


@pytest.mark.parametrize("transform", TRANSFORMS.values(), ids=TRANSFORMS.keys())
def test_check_backward_correct_affine(x64, transform):
    report = check_backward(transform(affine_forward), transform(affine_backward), affine_inputs())
    assert isinstance(report, GradCheckReport)
    assert [r.name for r in report.rows] == ["x", "w", "b"]
    assert [r.shape for r in report.rows] == [(4, 2, 3), (6, 5), (5,)]
    for row in report.rows:
        assert row.err_vs_autodiff < 1e-8 and row.err_vs_numeric < 1e-8
    assert report.max_error < 1e-8
    assert report.assert_close(1e-8) is report


@pytest.mark.parametrize("transform", TRANSFORMS.values(), ids=TRANSFORMS.keys())
def test_check_backward_correct_tanh_single_output(x64, transform):
    report = check_backward(transform(tanh_forward), transform(tanh_backward), _normal(5, (3, 4)))
    assert [r.name for r in report.rows] == ["x"]
    report.assert_close(1e-8)


def test_check_backward_wrong_db_names_input_and_index(x64):
    report = check_backward(affine_forward, affine_backward_bad_db, affine_inputs())
    assert report["x"].max_error < 1e-8 and report["w"].max_error < 1e-8
    bad = report["b"]
    # db doubled: |2g - g| / (|2g| + |g|) = 1/3 at every entry.
    assert bad.err_vs_autodiff == pytest.approx(1 / 3)
    assert bad.err_vs_numeric == pytest.approx(1 / 3)
    assert bad.manual_value == pytest.approx(2 * bad.reference_value)
    with pytest.raises(AssertionError) as info:
        report.assert_close(1e-7)
    msg = str(info.value)
    assert "b (shape (5,))" in msg
    assert f"at index {bad.worst_index}" in msg
    assert repr(bad.manual_value) in msg and repr(bad.reference_value) in msg
    assert "x (shape" not in msg.split("\n\n")[0]  # only the failing input is named


def test_check_backward_wrong_sign(x64):
    x = _normal(6, (2, 3))
    report = check_backward(tanh_forward, tanh_backward_bad_sign, (x,), argnames=["inp"])
    row = report["inp"]
    assert row.err_vs_numeric == pytest.approx(1.0)
    assert row.worst_index is not None and len(row.worst_index) == 2
    with pytest.raises(AssertionError, match=r"inp \(shape \(2, 3\)\).*at index \("):
        report.assert_close()


def test_check_backward_skips_non_float_inputs_and_uses_kwargs(x64):
    x = jnp.abs(_normal(7, (3, 2))) + 0.5
    report = check_backward(power_forward, power_backward, (x, 3), forward_kwargs={"scale": 2.0})
    assert [r.name for r in report.rows] == ["x"]
    report.assert_close(1e-8)


def test_check_backward_wrt_subset_of_full_backward(x64):
    report = check_backward(affine_forward, affine_backward_bad_db, affine_inputs(), wrt=(0, 1))
    assert [r.name for r in report.rows] == ["x", "w"]
    report.assert_close(1e-8)


def test_check_backward_casts_float32_inputs(x64):
    inputs = tuple(np.asarray(a, np.float32) for a in affine_inputs())
    check_backward(affine_forward, affine_backward, inputs).assert_close(1e-8)


def test_check_backward_explicit_dout_and_key(x64):
    inputs = affine_inputs()
    d1 = check_backward(affine_forward, affine_backward, inputs, dout=jnp.ones((4, 5)))
    d2 = check_backward(affine_forward, affine_backward, inputs, key=jax.random.key(3))
    d1.assert_close(1e-8)
    d2.assert_close(1e-8)
    with pytest.raises(ValueError, match=r"dout shape \(4, 4\) != out shape \(4, 5\)"):
        check_backward(affine_forward, affine_backward, inputs, dout=jnp.ones((4, 4)))


def test_check_backward_bad_arguments(x64):
    inputs = affine_inputs()
    with pytest.raises(ValueError, match="backward returned 2 gradient"):
        check_backward(affine_forward, lambda d, c: affine_backward(d, c)[:2], inputs)
    with pytest.raises(ValueError, match="gradient for 'b' has shape"):
        check_backward(
            affine_forward,
            lambda d, c: (*affine_backward(d, c)[:2], jnp.zeros((1, 5))),
            inputs,
        )
    with pytest.raises(ValueError, match="wrt index 5"):
        check_backward(affine_forward, affine_backward, inputs, wrt=(5,))
    with pytest.raises(TypeError, match="wrt includes input 1"):
        check_backward(power_forward, power_backward, (jnp.ones(2), 3), wrt=(0, 1))
    with pytest.raises(ValueError, match="argnames"):
        check_backward(affine_forward, affine_backward, inputs, argnames=["a"] * 2)
    with pytest.raises(TypeError, match="dtype float32"):
        check_backward(lambda x: (x.astype(jnp.float32), None), tanh_backward, (jnp.ones(2),))


# ----------------------------------------------------------------- reports


def test_report_str_and_rows(x64):
    report = check_backward(
        affine_forward, affine_backward, affine_inputs(), argnames=["inputs", "weight", "bias"]
    )
    text = str(report)
    for name in ["inputs", "weight", "bias", "vs autodiff", "vs numeric"]:
        assert name in text
    lines = text.splitlines()
    assert len(lines) == 2 + 1 + 3  # title, header, rule, one line per input
    rows = report.to_rows()
    assert [r["name"] for r in rows] == ["inputs", "weight", "bias"]
    assert set(rows[0]) >= {"err_vs_autodiff", "err_vs_numeric", "worst_index", "shape"}


def test_compare_trees_paths_worst_index_and_nan():
    manual = {"W1": np.array([[1.0, 2.0], [3.0, 4.0]]), "layers": [np.array(1.0)]}
    ref = {"W1": np.array([[1.0, 2.0], [3.0, 1.0]]), "layers": [np.array(1.0)]}
    report = compare_trees(manual, ref)
    assert report.references == ("reference",)
    assert [r.name for r in report.rows] == ["W1", "layers/0"]
    w1 = report["W1"]
    assert w1.worst_index == (1, 1)
    assert (w1.manual_value, w1.reference_value) == (4.0, 1.0)
    assert w1.max_error == pytest.approx(3 / 5)
    assert report["layers/0"].worst_index == ()
    with pytest.raises(AssertionError, match=r"W1 \(shape \(2, 2\)\)"):
        report.assert_close()

    nan_report = compare_trees(np.array([1.0, np.nan]), np.array([2.0, 1.0]), names=["g"])
    assert nan_report["g"].worst_index == (1,)
    assert np.isnan(nan_report.max_error)
    with pytest.raises(AssertionError, match="g"):
        nan_report.assert_close(1.0)


def test_compare_trees_multiple_references_and_errors():
    m = [np.ones(3)]
    report = compare_trees(
        m, ([np.ones(3)], [np.array([1.0, 1.0, 3.0])]), reference_name=("ad", "num")
    )
    row = report.rows[0]
    assert row.errors == {"ad": 0.0, "num": 0.5}
    assert row.worst_reference == "num" and row.worst_index == (2,)
    assert report.rows[0].name == "0"
    assert compare_trees(np.ones(2), np.ones(2)).rows[0].name == "<root>"
    with pytest.raises(ValueError, match="structures differ"):
        compare_trees({"a": np.ones(1)}, {"b": np.ones(1)})
    with pytest.raises(ValueError, match=r"w: manual shape \(2,\) != reference shape \(3,\)"):
        compare_trees({"w": np.ones(2)}, {"w": np.ones(3)})
    with pytest.raises(ValueError, match="names"):
        compare_trees([np.ones(1)], [np.ones(1)], names=["a", "b"])
    with pytest.raises(ValueError, match="tuple of 2 pytrees"):
        compare_trees(m, m, reference_name=("a", "b"))
