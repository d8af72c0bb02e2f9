"""cs231n ``solver.py``: the assignment's ``Solver``, unchanged in behaviour.

It trains any model with a ``params`` dict of NumPy arrays and a ``loss(X, y=None)`` method
(the classifiers of :mod:`jaxfc.cs231n.classifiers`, or your own) with the update rules of
:mod:`jaxfc.cs231n.optim`::

    solver = Solver(model, data, update_rule='sgd', optim_config={'learning_rate': 1e-3},
                    lr_decay=0.95, num_epochs=10, batch_size=100, print_every=100)
    solver.train()

Minibatches are drawn with replacement by ``np.random.choice``; there are
``max(num_train // batch_size, 1)`` iterations per epoch. Accuracies are checked after the
first iteration, at the end of each epoch and after the last iteration (so ``num_epochs + 1``
entries when an epoch has more than one iteration); the learning rate of each parameter's
config is multiplied by ``lr_decay`` at the end of each epoch; the parameters with the best
validation accuracy are put back into the model at the end. With ``checkpoint_name`` a pickle
``'%s_epoch_%d.pkl'`` is written at each check.

One difference: ``update_rule`` may also be a callable with the update rules' signature, and
the best parameters are only restored when some validation accuracy was above zero (the
assignment would leave the model without parameters).
"""

from __future__ import annotations

import pickle

import numpy as np

from jaxfc.cs231n import optim

__all__ = ["Solver"]


class Solver:
    """Trains a classification model; see the module docstring.

    Required: ``model`` and ``data``, a dict with ``X_train``, ``y_train``, ``X_val``, ``y_val``.

    Optional keyword arguments: ``update_rule`` ('sgd'; any rule of
    :mod:`jaxfc.cs231n.optim`), ``optim_config`` ({}; copied for each parameter), ``lr_decay``
    (1.0), ``batch_size`` (100), ``num_epochs`` (10), ``num_train_samples`` (1000; training rows
    used to check accuracy, None for all), ``num_val_samples`` (None: all), ``checkpoint_name``
    (None), ``print_every`` (10), ``verbose`` (True). Any other keyword is a ``ValueError``.
    """

    def __init__(self, model, data, **kwargs):
        self.model = model
        self.X_train = data["X_train"]
        self.y_train = data["y_train"]
        self.X_val = data["X_val"]
        self.y_val = data["y_val"]

        self.update_rule = kwargs.pop("update_rule", "sgd")
        self.optim_config = kwargs.pop("optim_config", {})
        self.lr_decay = kwargs.pop("lr_decay", 1.0)
        self.batch_size = kwargs.pop("batch_size", 100)
        self.num_epochs = kwargs.pop("num_epochs", 10)
        self.num_train_samples = kwargs.pop("num_train_samples", 1000)
        self.num_val_samples = kwargs.pop("num_val_samples", None)

        self.checkpoint_name = kwargs.pop("checkpoint_name", None)
        self.print_every = kwargs.pop("print_every", 10)
        self.verbose = kwargs.pop("verbose", True)

        if len(kwargs) > 0:
            extra = ", ".join(f'"{k}"' for k in kwargs)
            raise ValueError(f"Unrecognized arguments {extra}")

        if not callable(self.update_rule):
            if self.update_rule not in optim.__all__:
                raise ValueError(
                    f'Invalid update_rule "{self.update_rule}"; valid rules: {optim.__all__}'
                )
            self.update_rule = getattr(optim, self.update_rule)

        self._reset()

    def _reset(self):
        """Set up the bookkeeping; called by the constructor, not meant to be called by hand."""
        self.epoch = 0
        self.best_val_acc = 0
        self.best_params = {}
        self.loss_history = []
        self.train_acc_history = []
        self.val_acc_history = []

        # A copy of optim_config for each parameter.
        self.optim_configs = {}
        for p in self.model.params:
            d = {k: v for k, v in self.optim_config.items()}
            self.optim_configs[p] = d

    def _step(self):
        """One gradient update on a random minibatch."""
        num_train = self.X_train.shape[0]
        batch_mask = np.random.choice(num_train, self.batch_size)
        X_batch = self.X_train[batch_mask]
        y_batch = self.y_train[batch_mask]

        loss, grads = self.model.loss(X_batch, y_batch)
        self.loss_history.append(loss)

        for p, w in self.model.params.items():
            dw = grads[p]
            config = self.optim_configs[p]
            next_w, next_config = self.update_rule(w, dw, config)
            self.model.params[p] = next_w
            self.optim_configs[p] = next_config

    def _save_checkpoint(self):
        if self.checkpoint_name is None:
            return
        checkpoint = {
            "model": self.model,
            "update_rule": self.update_rule,
            "lr_decay": self.lr_decay,
            "optim_config": self.optim_config,
            "batch_size": self.batch_size,
            "num_train_samples": self.num_train_samples,
            "num_val_samples": self.num_val_samples,
            "epoch": self.epoch,
            "loss_history": self.loss_history,
            "train_acc_history": self.train_acc_history,
            "val_acc_history": self.val_acc_history,
        }
        filename = "%s_epoch_%d.pkl" % (self.checkpoint_name, self.epoch)  # noqa: UP031
        if self.verbose:
            print(f'Saving checkpoint to "{filename}"')
        with open(filename, "wb") as f:
            pickle.dump(checkpoint, f)

    def check_accuracy(self, X, y, num_samples=None, batch_size=100):
        """Accuracy of the model on X, y (a random subsample of ``num_samples`` rows, drawn
        with replacement, when given), predicting ``batch_size`` rows at a time."""
        N = X.shape[0]
        if num_samples is not None and N > num_samples:
            mask = np.random.choice(N, num_samples)
            N = num_samples
            X = X[mask]
            y = y[mask]

        num_batches = N // batch_size
        if N % batch_size != 0:
            num_batches += 1
        y_pred = []
        for i in range(num_batches):
            start = i * batch_size
            end = (i + 1) * batch_size
            scores = self.model.loss(X[start:end])
            y_pred.append(np.argmax(scores, axis=1))
        y_pred = np.hstack(y_pred)
        acc = np.mean(y_pred == y)
        return acc

    def train(self):
        """Run the optimization."""
        num_train = self.X_train.shape[0]
        iterations_per_epoch = max(num_train // self.batch_size, 1)
        num_iterations = self.num_epochs * iterations_per_epoch

        for t in range(num_iterations):
            self._step()

            if self.verbose and t % self.print_every == 0:
                print(
                    "(Iteration %d / %d) loss: %f"  # noqa: UP031
                    % (t + 1, num_iterations, self.loss_history[-1])
                )

            epoch_end = (t + 1) % iterations_per_epoch == 0
            if epoch_end:
                self.epoch += 1
                for k in self.optim_configs:
                    self.optim_configs[k]["learning_rate"] *= self.lr_decay

            first_it = t == 0
            last_it = t == num_iterations - 1
            if first_it or last_it or epoch_end:
                train_acc = self.check_accuracy(
                    self.X_train, self.y_train, num_samples=self.num_train_samples
                )
                val_acc = self.check_accuracy(
                    self.X_val, self.y_val, num_samples=self.num_val_samples
                )
                self.train_acc_history.append(train_acc)
                self.val_acc_history.append(val_acc)
                self._save_checkpoint()

                if self.verbose:
                    print(
                        "(Epoch %d / %d) train acc: %f; val_acc: %f"  # noqa: UP031
                        % (self.epoch, self.num_epochs, train_acc, val_acc)
                    )

                if val_acc > self.best_val_acc:
                    self.best_val_acc = val_acc
                    self.best_params = {}
                    for k, v in self.model.params.items():
                        self.best_params[k] = v.copy()

        if self.best_params:
            self.model.params = self.best_params
