"""Tests for jaxfc.optim against an independent numpy implementation of the cs231n rules."""

import hypothesis.extra.numpy as hnp
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from jaxfc import optim
from jaxfc.optim import (
    OPTIMIZERS,
    AdamState,
    clip_by_global_norm,
    get_hyperparam,
    get_optimizer,
    global_norm,
    learning_rate,
    set_hyperparams,
)

# ---------------------------------------------------------------------------------------------
# Independent numpy reference (cs231n optim.py, written per leaf, float64).


def f32(x):
    """Hyperparameters are stored as float32; the reference uses the same rounded values."""
    return float(np.float32(x))


def np_step(name, hp, w, dw, s, key):
    """One step for one leaf. ``s`` is a dict of numpy state for this leaf (mutated)."""
    lr = f32(hp["learning_rate"])
    if name == "sgd":
        return w - lr * dw
    if name == "sgd_momentum":
        s["v"] = f32(hp["momentum"]) * s["v"] - lr * dw
        return w + s["v"]
    if name == "nesterov_momentum":
        mu = f32(hp["momentum"])
        v_prev = s["v"]
        s["v"] = mu * s["v"] - lr * dw
        return w - mu * v_prev + (1 + mu) * s["v"]
    if name == "rmsprop":
        d, eps = f32(hp["decay_rate"]), f32(hp["epsilon"])
        s["cache"] = d * s["cache"] + (1 - d) * dw**2
        return w - lr * dw / (np.sqrt(s["cache"]) + eps)
    if name == "adagrad":
        s["cache"] = s["cache"] + dw**2
        return w - lr * dw / (np.sqrt(s["cache"]) + f32(hp["epsilon"]))
    if name in ("adam", "adamw"):
        b1, b2, eps = f32(hp["beta1"]), f32(hp["beta2"]), f32(hp["epsilon"])
        s["t"] += 1
        t = s["t"]
        s["m"] = b1 * s["m"] + (1 - b1) * dw
        s["v"] = b2 * s["v"] + (1 - b2) * dw**2
        mt = s["m"] / (1 - b1**t)
        vt = s["v"] / (1 - b2**t)
        step = mt / (np.sqrt(vt) + eps)
        if name == "adamw" and key.startswith("W"):
            step = step + f32(hp["weight_decay"]) * w
        return w - lr * step
    raise AssertionError(name)


DEFAULTS = {
    "sgd": dict(learning_rate=1e-2),
    "sgd_momentum": dict(learning_rate=1e-2, momentum=0.9),
    "nesterov_momentum": dict(learning_rate=1e-2, momentum=0.9),
    "rmsprop": dict(learning_rate=1e-2, decay_rate=0.99, epsilon=1e-8),
    "adagrad": dict(learning_rate=1e-2, epsilon=1e-8),
    "adam": dict(learning_rate=1e-3, beta1=0.9, beta2=0.999, epsilon=1e-8),
    "adamw": dict(learning_rate=1e-3, beta1=0.9, beta2=0.999, epsilon=1e-8, weight_decay=1e-2),
}

# Non-default hyperparameters, so that a swapped or ignored argument shows up.
CUSTOM = {
    "sgd": dict(learning_rate=0.3),
    "sgd_momentum": dict(learning_rate=0.05, momentum=0.7),
    "nesterov_momentum": dict(learning_rate=0.05, momentum=0.6),
    "rmsprop": dict(learning_rate=0.02, decay_rate=0.9, epsilon=1e-3),
    "adagrad": dict(learning_rate=0.1, epsilon=1e-2),
    "adam": dict(learning_rate=0.01, beta1=0.8, beta2=0.95, epsilon=1e-4),
    "adamw": dict(learning_rate=0.01, beta1=0.8, beta2=0.95, epsilon=1e-4, weight_decay=0.5),
}

N, D = 4, 5


def np_params():
    return {
        "W": np.linspace(-0.4, 0.6, num=N * D).reshape(N, D),
        "b": np.linspace(0.3, -0.2, num=D),
    }


def np_grads(k):
    """Different gradients at each step ``k``."""
    return {
        "W": np.linspace(-0.6, 0.4, num=N * D).reshape(N, D) * (1.0 + 0.5 * k),
        "b": np.cos(np.arange(D) + k),
    }


def np_zero_state(name, w):
    return {"v": np.zeros_like(w), "cache": np.zeros_like(w), "m": np.zeros_like(w), "t": 0}


def run_reference(name, hp, steps=3):
    params = np_params()
    states = {k: np_zero_state(name, w) for k, w in params.items()}
    for k in range(steps):
        grads = np_grads(k)
        params = {
            key: np_step(name, hp, params[key], grads[key], states[key], key) for key in params
        }
    return params


def run_jax(opt, steps=3, dtype=jnp.float32, jit=False):
    params = jax.tree.map(lambda x: jnp.asarray(x, dtype), np_params())
    state = opt.init(params)
    update = jax.jit(opt.update) if jit else opt.update
    for k in range(steps):
        grads = jax.tree.map(lambda x: jnp.asarray(x, dtype), np_grads(k))
        params, state = update(params, grads, state)
    return params, state


CASES = [(n, hp) for n in OPTIMIZERS for hp in (DEFAULTS[n], CUSTOM[n])]
CASE_IDS = [f"{n}-{'default' if hp is DEFAULTS[n] else 'custom'}" for n, hp in CASES]


# ---------------------------------------------------------------------------------------------
# Exact rules


@pytest.mark.parametrize(("name", "hp"), CASES, ids=CASE_IDS)
def test_three_steps_match_numpy_float32(name, hp):
    params, _ = run_jax(get_optimizer(name, **hp))
    expected = run_reference(name, hp)
    for key in expected:
        assert params[key].dtype == jnp.float32
        np.testing.assert_allclose(params[key], expected[key], rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize(("name", "hp"), CASES, ids=CASE_IDS)
def test_three_steps_match_numpy_float64(x64, name, hp):
    params, state = run_jax(get_optimizer(name, **hp), dtype=jnp.float64, jit=True)
    expected = run_reference(name, hp)
    for key in expected:
        assert params[key].dtype == jnp.float64
        np.testing.assert_allclose(params[key], expected[key], rtol=1e-12, atol=1e-14)
    for leaf in jax.tree.leaves(state):
        if jnp.issubdtype(leaf.dtype, jnp.floating) and leaf.ndim > 0:
            assert leaf.dtype == jnp.float64


# The cs231n assignment's check arrays: nonzero incoming state, one step, float64.
CS231N = {
    "sgd_momentum": (
        dict(learning_rate=1e-3, momentum=0.9),
        lambda: optim.MomentumState(jnp.asarray(np.linspace(0.6, 0.9, N * D).reshape(N, D)), {}),
    ),
    "rmsprop": (
        dict(learning_rate=1e-2, decay_rate=0.99, epsilon=1e-8),
        lambda: optim.RMSPropState(jnp.asarray(np.linspace(0.7, 0.9, N * D).reshape(N, D)), {}),
    ),
    "adam": (
        dict(learning_rate=1e-2, beta1=0.9, beta2=0.999, epsilon=1e-8),
        lambda: AdamState(
            jnp.asarray(5, jnp.int32),
            jnp.asarray(np.linspace(0.6, 0.9, N * D).reshape(N, D)),
            jnp.asarray(np.linspace(0.7, 0.5, N * D).reshape(N, D)),
            {},
        ),
    ),
}


@pytest.mark.parametrize("name", sorted(CS231N))
def test_cs231n_check_arrays(x64, name):
    hp, make_state = CS231N[name]
    w = np.linspace(-0.4, 0.6, num=N * D).reshape(N, D)
    dw = np.linspace(-0.6, 0.4, num=N * D).reshape(N, D)
    opt = get_optimizer(name, **hp)
    fresh = opt.init(jnp.asarray(w))
    state = make_state()._replace(hyperparams=fresh.hyperparams)
    new_w, new_state = jax.jit(opt.update)(jnp.asarray(w), jnp.asarray(dw), state)

    s = {"v": np.linspace(0.6, 0.9, N * D).reshape(N, D), "cache": None, "m": None, "t": 0}
    if name == "rmsprop":
        s["cache"] = np.linspace(0.7, 0.9, N * D).reshape(N, D)
    if name == "adam":
        s.update(
            m=np.linspace(0.6, 0.9, N * D).reshape(N, D),
            v=np.linspace(0.7, 0.5, N * D).reshape(N, D),
            t=5,
        )
    expected = np_step(name, hp, w, dw, s, "W")
    np.testing.assert_allclose(new_w, expected, rtol=1e-12, atol=1e-15)
    if name == "adam":
        assert int(new_state.count) == 6
        np.testing.assert_allclose(new_state.m, s["m"], rtol=1e-12)
        np.testing.assert_allclose(new_state.v, s["v"], rtol=1e-12)


def _torch_style_momentum(hp_lrs, nesterov, steps):
    """PyTorch/Optax momentum in numpy: b <- mu*b + g; w <- w - lr*(b or g + mu*b)."""
    w, mu = np_params()["W"], f32(0.9)
    b = np.zeros_like(w)
    for k in range(steps):
        g, lr = np_grads(k)["W"], f32(hp_lrs[k])
        b = mu * b + g
        w = w - lr * ((g + mu * b) if nesterov else b)
    return w


@pytest.mark.parametrize("name", ["sgd_momentum", "nesterov_momentum"])
def test_momentum_matches_torch_form_only_for_constant_lr(x64, name):
    opt = get_optimizer(name, learning_rate=0.1, momentum=0.9)
    for lrs, should_match in [((0.1,) * 4, True), ((0.1, 0.1, 0.02, 0.02), False)]:
        params = jnp.asarray(np_params()["W"])
        state = opt.init(params)
        for k, lr in enumerate(lrs):
            state = set_hyperparams(state, learning_rate=lr)
            params, state = opt.update(params, jnp.asarray(np_grads(k)["W"]), state)
        torch_w = _torch_style_momentum(lrs, name == "nesterov_momentum", len(lrs))
        assert np.allclose(params, torch_w, rtol=1e-10, atol=1e-12) == should_match


# ---------------------------------------------------------------------------------------------
# Convergence on analytic objectives


def quadratic(x):
    a = jnp.array([1.0, 10.0])
    c = jnp.array([3.0, -2.0])
    return 0.5 * jnp.sum(a * (x - c) ** 2)


def rosenbrock(x):
    return (1.0 - x[0]) ** 2 + 100.0 * (x[1] - x[0] ** 2) ** 2


def minimize(opt, f, x0, steps):
    grad = jax.grad(f)

    @jax.jit
    def run(x):
        def body(carry, _):
            x, s = carry
            return opt.update(x, grad(x), s), None

        (x, _), _ = jax.lax.scan(body, (x, opt.init(x)), None, length=steps)
        return x

    return run(jnp.asarray(x0, jnp.float32))


CONVERGE = [
    # (optimizer, hyperparams, quadratic steps, rosenbrock steps)
    ("sgd", dict(learning_rate=0.15), 200, None),
    ("sgd", dict(learning_rate=1e-3), None, 20000),
    ("sgd_momentum", dict(learning_rate=0.05, momentum=0.9), 300, None),
    ("sgd_momentum", dict(learning_rate=2e-4, momentum=0.95), None, 5000),
    ("nesterov_momentum", dict(learning_rate=0.05, momentum=0.9), 300, None),
    ("nesterov_momentum", dict(learning_rate=2e-4, momentum=0.95), None, 5000),
    ("rmsprop", dict(learning_rate=1e-2, decay_rate=0.9), 1000, None),
    ("rmsprop", dict(learning_rate=1e-3, decay_rate=0.9), None, 20000),
    ("adagrad", dict(learning_rate=1.0), 150, None),
    ("adagrad", dict(learning_rate=0.5), None, 20000),
    ("adam", dict(learning_rate=0.1), 500, None),
    ("adam", dict(learning_rate=0.02), None, 2000),
    ("adamw", dict(learning_rate=0.1, weight_decay=0.0), 500, None),
    ("adamw", dict(learning_rate=0.02, weight_decay=0.0), None, 2000),
]


@pytest.mark.parametrize(("name", "hp", "q_steps", "r_steps"), CONVERGE)
def test_converges(name, hp, q_steps, r_steps):
    opt = get_optimizer(name, **hp)
    if q_steps:
        x = minimize(opt, quadratic, [0.0, 0.0], q_steps)
        np.testing.assert_allclose(x, [3.0, -2.0], atol=2e-3)
    if r_steps:
        x = minimize(opt, rosenbrock, [-1.0, 1.0], r_steps)
        np.testing.assert_allclose(x, [1.0, 1.0], atol=2e-3)


def test_adamw_decay_is_decoupled():
    """Adam's normalized step is sign(g) near a fixed point, so decoupled decay stops where
    sign(g) + wd * w = 0: at (1, -1) for wd = 1. L2 in the loss would stop at a*c/(a+wd)."""
    opt = get_optimizer("adamw", learning_rate=0.05, weight_decay=1.0, decay_mask=True)
    x = minimize(opt, quadratic, [0.0, 0.0], 4000)
    np.testing.assert_allclose(x, [1.0, -1.0], atol=2e-2)


# ---------------------------------------------------------------------------------------------
# Transforms, structure, dtypes


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_jit_equals_eager(name):
    eager_p, eager_s = run_jax(get_optimizer(name, **CUSTOM[name]))
    jit_p, jit_s = run_jax(get_optimizer(name, **CUSTOM[name]), jit=True)
    for a, b in zip(
        jax.tree.leaves((eager_p, eager_s)), jax.tree.leaves((jit_p, jit_s)), strict=True
    ):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", OPTIMIZERS)
@pytest.mark.parametrize("clip", [False, True])
def test_structure_and_dtypes_preserved(name, clip):
    opt = get_optimizer(name)
    if clip:
        opt = clip_by_global_norm(opt, 1.0)
    params = {
        "W1": jnp.ones((3, 2)),
        "b1": jnp.zeros(2),
        "gamma1": jnp.ones(2),
        "nested": [jnp.ones(4, jnp.bfloat16)],
    }
    grads = jax.tree.map(lambda x: jnp.full_like(x, 0.5), params)
    state = opt.init(params)
    assert hasattr(state, "hyperparams") and state._fields[-1] == "hyperparams"
    for v in state.hyperparams.values():
        assert v.shape == () and v.dtype == jnp.float32
    new_p, new_s = jax.jit(opt.update)(params, grads, state)
    assert jax.tree.structure(new_p) == jax.tree.structure(params)
    assert jax.tree.structure(new_s) == jax.tree.structure(state)
    assert type(new_s) is type(state)
    for a, b in zip(jax.tree.leaves((params, state)), jax.tree.leaves((new_p, new_s)), strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape
    assert not np.allclose(new_p["W1"], params["W1"])
    assert new_p["nested"][0].dtype == jnp.bfloat16


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_flat_array_params(name):
    opt = get_optimizer(name)
    x = jnp.arange(6.0).reshape(2, 3)
    new, state = opt.update(x, jnp.ones_like(x), opt.init(x))
    assert new.shape == x.shape and bool(jnp.all(new < x))


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_init_on_concrete_params_compiles_nothing(name, compiled_programs):
    """The state is built on the host: an eager zeros_like would compile a program per
    shape (shapes no other test uses, so no earlier compilation can hide one)."""
    params = {"W": np.ones((17, 29), np.float32), "b": jnp.ones(31)}
    compiled_programs.clear()
    state = get_optimizer(name).init(params)
    assert compiled_programs == []
    for moments in [v for k, v in state._asdict().items() if isinstance(v, dict)
                    and k != "hyperparams"]:
        assert all(isinstance(m, jax.Array) for m in moments.values())
        assert moments["W"].shape == (17, 29) and not np.any(np.asarray(moments["W"]))


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_no_recompile_when_learning_rate_changes(name):
    opt = get_optimizer(name)
    traces = []

    @jax.jit
    def step(p, g, s):
        traces.append(1)
        return opt.update(p, g, s)

    p = {"W": jnp.ones((2, 3)), "b": jnp.zeros(3)}
    g = jax.tree.map(jnp.ones_like, p)
    s = opt.init(p)
    p1, s1 = step(p, g, s)
    p2, _ = step(p, g, set_hyperparams(s, learning_rate=0.5))
    p3, _ = step(p1, g, set_hyperparams(s1, learning_rate=np.float64(0.25)))
    assert len(traces) == 1 and step._cache_size() == 1
    assert not np.allclose(p1["W"], p2["W"])  # the new value is used, not baked in
    assert float(learning_rate(set_hyperparams(s, learning_rate=0.5))) == 0.5


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_vmap_over_learning_rates_equals_separate_runs(name):
    opt = get_optimizer(name)
    p0 = {
        "W": jnp.asarray(np_params()["W"], jnp.float32),
        "b": jnp.asarray(np_params()["b"], jnp.float32),
    }
    grad = jax.grad(lambda p: jnp.sum((p["W"] - 1.0) ** 2) + jnp.sum(p["b"] ** 4))

    def run(lr):
        p, s = p0, set_hyperparams(opt.init(p0), learning_rate=lr)
        for _ in range(3):
            p, s = opt.update(p, grad(p), s)
        return p, s

    lrs = jnp.array([0.0, 1e-3, 0.05, 0.3])
    batched_p, batched_s = jax.jit(jax.vmap(run))(lrs)
    np.testing.assert_array_equal(learning_rate(batched_s), lrs)
    for i, lr in enumerate(lrs):
        single_p, _ = jax.jit(run)(lr)
        for key in single_p:
            np.testing.assert_allclose(batched_p[key][i], single_p[key], rtol=1e-5, atol=1e-6)
    assert not np.allclose(batched_p["W"][1], batched_p["W"][3])


# ---------------------------------------------------------------------------------------------
# Properties

# XLA on CPU flushes subnormals to zero, so they are left out.
floats = st.floats(-1e3, 1e3, allow_nan=False, allow_subnormal=False, width=32)
arrays = hnp.arrays(
    np.float32, hnp.array_shapes(min_dims=1, max_dims=2, max_side=5), elements=floats
)


@given(arrays, arrays, st.sampled_from(OPTIMIZERS))
def test_zero_learning_rate_is_identity(w, g, name):
    g = np.resize(g, w.shape)
    opt = get_optimizer(name, learning_rate=0.0)
    new, _ = opt.update(jnp.asarray(w), jnp.asarray(g), opt.init(jnp.asarray(w)))
    np.testing.assert_array_equal(new, w)


nonzero = st.floats(2.0**-6, 1e3, width=32) | st.floats(-1e3, -(2.0**-6), width=32)


@given(hnp.arrays(np.float32, st.integers(1, 8), elements=nonzero), st.floats(1e-4, 1.0))
def test_adam_first_step_has_magnitude_lr(g, lr):
    opt = get_optimizer("adam", learning_rate=lr)
    w = jnp.zeros_like(jnp.asarray(g))
    new, _ = opt.update(w, jnp.asarray(g), opt.init(w))
    np.testing.assert_allclose(np.abs(new), f32(lr), rtol=1e-5)
    np.testing.assert_array_equal(np.sign(new), -np.sign(g))


@given(arrays, arrays, st.floats(1e-3, 1e3))
def test_clip_bounds_global_norm(g1, g2, max_norm):
    opt = clip_by_global_norm(get_optimizer("sgd", learning_rate=1.0), max_norm)
    params = {"a": jnp.zeros(g1.shape), "b": jnp.zeros(g2.shape)}
    grads = {"a": jnp.asarray(g1), "b": jnp.asarray(g2)}
    new, _ = jax.jit(opt.update)(params, grads, opt.init(params))
    norm = float(np.sqrt(np.sum(g1.astype(np.float64) ** 2) + np.sum(g2.astype(np.float64) ** 2)))
    clipped = float(global_norm(new))
    assert clipped <= f32(max_norm) * (1 + 1e-5)
    if norm <= f32(max_norm):  # untouched below the threshold
        np.testing.assert_array_equal(new["a"], -g1)
    else:  # same direction, norm equal to max_norm
        np.testing.assert_allclose(clipped, f32(max_norm), rtol=1e-5)
        np.testing.assert_allclose(new["a"], -g1 * (f32(max_norm) / norm), rtol=1e-4, atol=1e-6)


def test_clip_wraps_hyperparams():
    opt = clip_by_global_norm(get_optimizer("adam", learning_rate=0.01), 2.0)
    state = opt.init(jnp.ones(3))
    assert float(get_hyperparam(state, "max_norm")) == 2.0
    assert float(learning_rate(state)) == pytest.approx(0.01)
    state = set_hyperparams(state, max_norm=0.5)
    new, state = opt.update(jnp.zeros(3), jnp.full(3, 10.0), state)
    assert float(get_hyperparam(state, "max_norm")) == 0.5
    with pytest.raises(ValueError, match="max_norm"):
        clip_by_global_norm(opt, 1.0).init(jnp.ones(3))


# ---------------------------------------------------------------------------------------------
# AdamW masks


def cs231n_params():
    return {
        "W1": jnp.full((3, 2), 2.0),
        "b1": jnp.full(2, 2.0),
        "gamma1": jnp.full(2, 2.0),
        "beta1": jnp.full(2, 2.0),
        "W2": jnp.full((2, 1), 2.0),
    }


@pytest.mark.parametrize(
    ("decay_mask", "decayed"),
    [
        (None, {"W1", "W2"}),
        (lambda path: path in ("b1", "W2"), {"b1", "W2"}),
        ({"W1": False, "b1": False, "gamma1": True, "beta1": False, "W2": True}, {"gamma1", "W2"}),
        (False, set()),
        (True, {"W1", "b1", "gamma1", "beta1", "W2"}),
    ],
    ids=["default", "callable", "pytree", "none", "all"],
)
def test_adamw_decay_mask(decay_mask, decayed):
    opt = get_optimizer("adamw", learning_rate=0.1, weight_decay=0.5, decay_mask=decay_mask)
    params = cs231n_params()
    zeros = jax.tree.map(jnp.zeros_like, params)  # adam part is exactly 0: only decay moves w
    new, _ = jax.jit(opt.update)(params, zeros, opt.init(params))
    for key, value in new.items():
        expected = 2.0 * (1 - f32(0.1) * f32(0.5)) if key in decayed else 2.0
        np.testing.assert_allclose(value, expected, rtol=1e-6, err_msg=key)


def test_adamw_default_mask_without_names_uses_ndim():
    opt = get_optimizer("adamw", learning_rate=0.1, weight_decay=0.5)
    params = [jnp.full((2, 2), 2.0), jnp.full(2, 2.0)]
    new, _ = opt.update(params, jax.tree.map(jnp.zeros_like, params), opt.init(params))
    np.testing.assert_allclose(new[0], 2.0 * (1 - f32(0.1) * f32(0.5)), rtol=1e-6)
    np.testing.assert_array_equal(new[1], 2.0)


def test_adamw_nested_names():
    opt = get_optimizer("adamw", learning_rate=0.1, weight_decay=0.5)
    params = {"layer": {"W": jnp.full((2, 2), 2.0), "b": jnp.full(2, 2.0)}}
    new, _ = opt.update(params, jax.tree.map(jnp.zeros_like, params), opt.init(params))
    assert float(new["layer"]["W"][0, 0]) < 2.0 and float(new["layer"]["b"][0]) == 2.0


def test_adamw_bad_mask_structure():
    opt = get_optimizer("adamw", decay_mask={"W1": True})
    params = cs231n_params()
    with pytest.raises(ValueError, match="decay_mask structure"):
        opt.update(params, params, opt.init(params))


def test_adam_equals_adamw_with_zero_decay():
    a, _ = run_jax(get_optimizer("adam", **CUSTOM["adam"]))
    hp = dict(CUSTOM["adamw"], weight_decay=0.0)
    b, _ = run_jax(get_optimizer("adamw", **hp))
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])


# ---------------------------------------------------------------------------------------------
# Errors

BAD_GRADS = [
    ({"W1": jnp.ones((3, 2))}, r"structure.*'b1'"),
    ({"W1": jnp.ones((3, 2)), "b1": jnp.ones(2), "extra": jnp.ones(1)}, r"structure.*'extra'"),
    ({"W1": jnp.ones((2, 3)), "b1": jnp.ones(2)}, r"shape.*'W1'.*\(3, 2\).*\(2, 3\)"),
    ({"W1": jnp.ones((3, 2)), "b1": jnp.ones((1, 2))}, r"shape.*'b1'"),
    ({"W1": jnp.ones((3, 2)), "b1": jnp.ones(2, jnp.int32)}, r"'b1'.*floating"),
]


@pytest.mark.parametrize("name", OPTIMIZERS)
@pytest.mark.parametrize(
    ("grads", "match"), BAD_GRADS, ids=["missing", "extra", "shape", "rank", "dtype"]
)
@pytest.mark.parametrize("jit", [False, True])
def test_bad_grads_name_the_path(name, grads, match, jit):
    opt = get_optimizer(name)
    params = {"W1": jnp.ones((3, 2)), "b1": jnp.zeros(2)}
    update = jax.jit(opt.update) if jit else opt.update
    with pytest.raises((ValueError, TypeError), match=match):
        update(params, grads, opt.init(params))


def test_integer_params_rejected():
    with pytest.raises(TypeError, match="'W'"):
        get_optimizer("sgd").init({"W": jnp.ones(2, jnp.int32)})


def test_state_from_other_params_rejected():
    opt = get_optimizer("adam")
    state = opt.init({"W1": jnp.ones((3, 2))})
    params = {"W2": jnp.ones((3, 2))}
    with pytest.raises(ValueError, match=r"state\.m.*'W2'"):
        opt.update(params, params, state)


def test_unknown_optimizer_and_config():
    with pytest.raises(ValueError, match="adam.*sgd_momentum"):
        get_optimizer("adamax")
    with pytest.raises(ValueError, match=r"\['lr'\].*learning_rate"):
        get_optimizer("sgd", lr=0.1)


@pytest.mark.parametrize(
    ("alias", "name"), [("momentum", "sgd_momentum"), ("nesterov", "nesterov_momentum")]
)
def test_aliases(alias, name):
    a, _ = run_jax(get_optimizer(alias, learning_rate=0.05))
    b, _ = run_jax(get_optimizer(name, learning_rate=0.05))
    np.testing.assert_array_equal(a["W"], b["W"])


@pytest.mark.parametrize(
    ("name", "config", "match"),
    [
        ("sgd", dict(learning_rate=-1.0), "learning_rate"),
        ("sgd", dict(learning_rate=float("nan")), "learning_rate"),
        ("sgd_momentum", dict(momentum=1.0), "momentum"),
        ("rmsprop", dict(decay_rate=1.5), "decay_rate"),
        ("adagrad", dict(epsilon=-1e-8), "epsilon"),
        ("adam", dict(beta2=1.0), "beta2"),
        ("adamw", dict(weight_decay=-0.1), "weight_decay"),
        ("adam", dict(learning_rate=jnp.ones(2)), "learning_rate.*scalar"),
    ],
)
def test_bad_hyperparams(name, config, match):
    with pytest.raises(ValueError, match=match):
        get_optimizer(name, **config)


def test_clip_bad_max_norm():
    with pytest.raises(ValueError, match="max_norm"):
        clip_by_global_norm(get_optimizer("sgd"), 0.0)


def test_hyperparam_accessors():
    state = get_optimizer("rmsprop", learning_rate=0.03).init(jnp.ones(2))
    assert float(get_hyperparam(state, "decay_rate")) == pytest.approx(0.99)
    with pytest.raises(ValueError, match=r"'lr'.*decay_rate.*learning_rate"):
        set_hyperparams(state, lr=0.1)
    with pytest.raises(ValueError, match="momentum.*known"):
        get_hyperparam(state, "momentum")
    with pytest.raises(ValueError, match="scalar"):
        set_hyperparams(state, learning_rate=jnp.ones(2))
    new = set_hyperparams(state, learning_rate=1, epsilon=0.5)
    assert new.hyperparams["learning_rate"].dtype == jnp.float32
    assert float(learning_rate(new)) == 1.0 and float(learning_rate(state)) == pytest.approx(0.03)
    with pytest.raises(TypeError, match="hyperparams"):
        learning_rate((1, 2))
