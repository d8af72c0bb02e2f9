"""Run by tests/test_parallel.py in a fresh process with 8 forced host devices.

Prints one JSON line with what the test asserts on.
"""

import json
import os

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from jaxfc.data import load_digits  # noqa: E402
from jaxfc.models import FullyConnectedNet  # noqa: E402
from jaxfc.parallel import batch_sharded, data_mesh, shard_batch  # noqa: E402
from jaxfc.solver import Solver  # noqa: E402

data = load_digits()
model = FullyConnectedNet((32,), input_dim=64, num_classes=10, normalization="batchnorm",
                          dropout=0.2)
options = dict(update_rule="sgd_momentum", optim_config={"learning_rate": 0.05},
               num_epochs=2, batch_size=64, verbose=False, seed=3)
single = Solver(model, data, **options).train()
mesh = data_mesh()
sharded = Solver(model, data, mesh=mesh, **options).train()

max_diff = max(
    float(np.max(np.abs(np.asarray(single.params[k]) - np.asarray(sharded.params[k]))))
    for k in single.params
)
compiled = sharded._epoch_fn.lower(
    sharded._state, sharded.X_train, sharded.y_train, *sharded._epoch_inputs(0), 0.05
).compile()
batch = shard_batch(jnp.zeros((64, 64)), mesh)
print(json.dumps({
    "num_devices": len(jax.devices()),
    "max_param_diff": max_diff,
    "val_acc_single": single.val_acc_history,
    "val_acc_sharded": sharded.val_acc_history,
    "loss_diff": float(np.max(np.abs(np.subtract(single.loss_history,
                                                 sharded.loss_history)))),
    "param_devices": len(sharded.params["W1"].sharding.device_set),
    "shard_shape": list(batch.sharding.shard_shape(batch.shape)),
    "num_shards": len(batch.addressable_shards),
    "all_reduces": compiled.as_text().count("all-reduce("),
    "sharding_spec": str(batch_sharded(mesh).spec),
}))

# Sweeps spread their models over the devices.
from jaxfc.sweep import sweep  # noqa: E402

sweep_model = FullyConnectedNet((16,), input_dim=64, num_classes=10)
sweep_options = dict(update_rule="sgd", num_epochs=1, batch_size=64, verbose=False,
                     num_train_samples=200)
settings = {"learning_rate": [0.01, 0.02, 0.05, 0.1, 0.2, 0.3]}
spread = sweep(sweep_model, data, settings, mesh=mesh, **sweep_options)
together = sweep(sweep_model, data, settings, **sweep_options)
print(json.dumps({
    "sweep_chunk_size": spread.chunk_size,
    "sweep_max_diff": float(np.nanmax(np.abs(spread.loss_history - together.loss_history))),
    "sweep_val_diff": float(np.nanmax(np.abs(spread.val_acc_history
                                             - together.val_acc_history))),
}))
