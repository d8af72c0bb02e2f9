"""Mixed precision: layers compute in bfloat16/float16, masters stay float32."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxfc.data import load_digits
from jaxfc.models import FullyConnectedNet, TwoLayerNet
from jaxfc.solver import Solver


def _batch(n=32, d=20, c=5, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)).astype(np.float32), rng.integers(0, c, n).astype(np.int32)


@pytest.mark.parametrize("compute_dtype", ["bfloat16", "float16"])
@pytest.mark.parametrize("normalization", [None, "batchnorm", "layernorm"])
def test_masters_stay_float32_and_grads_match_float32(compute_dtype, normalization):
    X, y = _batch()
    kw = dict(hidden_dims=(16, 16), input_dim=20, num_classes=5, normalization=normalization,
              weight_scale="he")
    mixed = FullyConnectedNet(compute_dtype=compute_dtype, **kw)
    full = FullyConnectedNet(**kw)
    params, state = full.init(jax.random.key(0))
    loss32, grads32, state32 = full.loss(params, state, X, y)
    for gradients in ("manual", "autodiff"):
        loss, grads, new_state = mixed.loss(params, state, X, y, gradients=gradients)
        assert loss.dtype == jnp.float32
        assert all(g.dtype == jnp.float32 for g in grads.values())
        assert all(s.dtype == jnp.float32 for s in jax.tree_util.tree_leaves(new_state))
        assert abs(float(loss) - float(loss32)) < 0.05 * abs(float(loss32))
        # Relative to the largest gradient: the biases before batch norm have a true
        # gradient of 0, so their own scale is rounding noise.
        scale = max(float(jnp.max(jnp.abs(g))) for g in grads32.values())
        for name in params:
            err = float(jnp.max(jnp.abs(grads[name] - grads32[name]))) / scale
            assert err < 0.05, (gradients, name, err)
    scores, _ = mixed.apply(params, state, X)
    assert scores.dtype == jnp.float32


def test_manual_and_autodiff_agree_in_bfloat16():
    X, y = _batch()
    model = FullyConnectedNet((16,), input_dim=20, num_classes=5, compute_dtype="bfloat16")
    params, state = model.init(jax.random.key(1))
    _, manual, _ = model.loss(params, state, X, y, gradients="manual")
    _, auto, _ = model.loss(params, state, X, y, gradients="autodiff")
    for name in params:
        scale = float(jnp.max(jnp.abs(auto[name]))) + 1e-6
        assert float(jnp.max(jnp.abs(manual[name] - auto[name]))) / scale < 0.02, name


def test_float16_loss_scaling_keeps_small_gradients_from_flushing_to_zero():
    rng = np.random.default_rng(0)
    X = (1e-4 * rng.normal(size=(64, 20))).astype(np.float32)
    y = rng.integers(0, 5, 64).astype(np.int32)
    kw = dict(input_dim=20, hidden_dim=8, num_classes=5, weight_scale=1e-3,
              compute_dtype="float16")
    reference = TwoLayerNet(input_dim=20, hidden_dim=8, num_classes=5, weight_scale=1e-3)
    params, state = reference.init(jax.random.key(0))
    _, exact, _ = reference.loss(params, state, X, y)
    _, unscaled, _ = TwoLayerNet(loss_scale=1.0, **kw).loss(params, state, X, y)
    _, scaled, _ = TwoLayerNet(**kw).loss(params, state, X, y)
    assert TwoLayerNet(**kw).network.effective_loss_scale == 1024.0
    nonzero = lambda g: float(jnp.mean(g != 0))
    # The first layer's gradients are ~1e-8, below float16's smallest subnormal (6e-8).
    assert nonzero(unscaled["W1"]) < 0.5 * nonzero(exact["W1"])
    assert nonzero(scaled["W1"]) > 0.9 * nonzero(exact["W1"])
    error = lambda g, name: float(
        jnp.max(jnp.abs(g[name] - exact[name])) / jnp.max(jnp.abs(exact[name])))
    assert error(unscaled, "W1") == pytest.approx(1.0)  # everything flushed to zero
    assert error(scaled, "W1") < 0.5
    assert error(scaled, "W2") < 0.05


def test_solver_trains_digits_in_bfloat16():
    data = load_digits()
    model = FullyConnectedNet((64,), input_dim=64, num_classes=10, weight_scale="he",
                              normalization="batchnorm", compute_dtype="bfloat16")
    solver = Solver(model, data, update_rule="adam", optim_config={"learning_rate": 3e-3},
                    num_epochs=5, batch_size=50, verbose=False, seed=0).train()
    assert solver.params["W1"].dtype == jnp.float32
    assert solver.opt_state.m["W1"].dtype == jnp.float32
    assert solver.best_val_acc > 0.9


def test_replacing_the_dtype_changes_the_computation_dtype():
    import dataclasses

    base = FullyConnectedNet((4,), input_dim=3, num_classes=2)
    assert base.compute_dtype is None and base.loss_scale is None
    assert dataclasses.replace(base, dtype=np.float64).computation_dtype == np.float64
    half = dataclasses.replace(base, compute_dtype="float16")
    assert half.computation_dtype == jnp.float16 and half.effective_loss_scale == 1024.0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(compute_dtype="int8"), "compute_dtype|floating"),
        (dict(compute_dtype="float8_e4m3fn"), "not supported"),
        (dict(compute_dtype="float64"), "wider|64-bit"),
        (dict(compute_dtype="float16", loss_scale=0.0), "loss_scale"),
    ],
)
def test_bad_mixed_precision_settings_are_clear_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FullyConnectedNet((4,), input_dim=3, num_classes=2, **kwargs)
