"""The cs231n assignment-2 API (fully-connected nets) on top of jaxfc's functional core.

A notebook written for the assignment runs by changing its imports only::

    from cs231n.layers import *                    ->  from jaxfc.cs231n.layers import *
    from cs231n.classifiers.fc_net import *        ->  from jaxfc.cs231n.classifiers.fc_net import *
    from cs231n.solver import Solver               ->  from jaxfc.cs231n.solver import Solver

Modules: ``layers``, ``layer_utils``, ``optim``, ``solver``, ``gradient_check``, ``data_utils``
and ``classifiers.fc_net``. Every function takes and returns NumPy arrays and keeps the
assignment's in-place habits (``bn_param``, ``dropout_param`` and optimizer ``config`` dicts are
updated in place; ``model.params`` is re-read at every ``model.loss`` call). The math is the
core's (:mod:`jaxfc.layers`, :mod:`jaxfc.losses`, :mod:`jaxfc.models`, :mod:`jaxfc.optim`);
this package only converts.

Conventions and differences (see each module):

* float64: any float64 input (or ``dtype=np.float64`` model) runs inside
  ``jax.enable_x64(True)``, so the assignment's float64 gradient checks work without turning
  64-bit mode on globally. Matrix products use ``jax.default_matmul_precision('highest')``.
* Randomness comes from NumPy's global generator, as in the assignment: weights are
  ``weight_scale * np.random.randn(fan_in, fan_out)`` layer by layer, dropout masks are drawn
  with ``np.random.rand`` (reseeded from ``dropout_param['seed']`` when given).
* Dropout follows this project's seed: ``p`` (and ``FullyConnectedNet(dropout=...)``) is the DROP
  probability, 0 disables; the cs231n 2018+ notebooks use the keep probability instead.
* ``get_CIFAR10_data`` returns float32 images (the assignment's are float64).
* Convolutional layers of later assignment versions are not provided.
"""
