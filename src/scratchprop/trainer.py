"""The book's ``Trainer`` (``common/trainer.py``), on :func:`scratchprop.train.train`'s loop.

Same constructor, attributes and lists as the book::

    trainer = Trainer(network, x_train, t_train, x_test, t_test, epochs=20,
                      mini_batch_size=100, optimizer="Adam", optimizer_param={"lr": 0.001},
                      evaluate_sample_num_per_epoch=1000, verbose=True)
    trainer.train()
    trainer.train_loss_list, trainer.train_acc_list, trainer.test_acc_list

``max_iter = int(epochs * iter_per_epoch)`` iterations, so
``train_loss_list`` has ``max_iter`` entries, as in the book. Differences,
all from running on :func:`scratchprop.train.train`:

* the accuracies are taken at the end of each epoch (after ``ceil(k *
  iter_per_epoch)`` iterations) and, when ``max_iter`` ends mid-epoch, once
  more at the end: one entry per epoch. The book tests ``current_iter %
  iter_per_epoch == 0`` before counting the iteration, so it evaluates after
  the first step of each epoch instead, and only once in all when
  ``iter_per_epoch`` is not a whole number (83.3 for the bundled MNIST);
* a loss in ``train_loss_list`` is the one of the iteration's gradient pass
  (before the update, in training mode), not a second forward pass after it;
* mini-batches come from ``np.random.default_rng(seed)`` (``seed=``, keyword
  only; default a fresh one, in ``trainer.state.seed``), not the global
  ``np.random`` (which only Dropout uses: seeded from the same seed);
* the optimizer class comes from the network's backend (``scratchprop.numba.Adam``
  for a Numba net); the book's misspelt key ``'rmsprpo'`` is ``'rmsprop'``.

Calling :meth:`Trainer.train` again trains ``max_iter`` more iterations,
continuing the lists, as the book's would.
"""

import numpy as np

from ._train_setup import _optimizer_class
from .train import evaluate, iters_per_epoch, make_optimizer, train

__all__ = ["Trainer"]


class Trainer:
    """Trains a network with one of the book's optimizers and records loss and accuracy lists."""

    def __init__(
        self,
        network,
        x_train,
        t_train,
        x_test,
        t_test,
        epochs=20,
        mini_batch_size=100,
        optimizer="SGD",
        optimizer_param=None,
        evaluate_sample_num_per_epoch=None,
        verbose=True,
        *,
        seed=None,
    ):
        self.network = network
        self.verbose = verbose
        self.x_train, self.t_train = x_train, t_train
        self.x_test, self.t_test = x_test, t_test
        self.epochs = epochs
        self.batch_size = mini_batch_size
        self.evaluate_sample_num_per_epoch = evaluate_sample_num_per_epoch
        if isinstance(optimizer, (str, type)):  # the book: optimizer_param={'lr': 0.01}, else class defaults
            cls = _optimizer_class(network, optimizer) if isinstance(optimizer, str) else optimizer
            self.optimizer = cls(**({"lr": 0.01} if optimizer_param is None else optimizer_param))
        else:  # an optimizer object, used as it is
            self.optimizer = make_optimizer(network, optimizer, optimizer_param)
        self.train_size = len(x_train)
        self.iter_per_epoch = iters_per_epoch(self.train_size, mini_batch_size)
        self.max_iter = int(epochs * self.iter_per_epoch)
        self.current_iter = 0
        self.current_epoch = 0
        self.seed = seed
        self.state = None  #: the :class:`scratchprop.train.TrainState` after :meth:`train`
        self.result = None  #: the last :class:`scratchprop.train.TrainResult`
        self.test_acc = None  #: the final test accuracy on the whole test set

        self.train_loss_list = []
        self.train_acc_list = []
        self.test_acc_list = []

    def _on_step(self, done, total, loss):
        self.train_loss_list.append(loss)
        self.current_iter += 1
        if self.verbose:
            print("train loss:" + str(loss))

    def _on_epoch(self, row, state):
        self.current_epoch = row["epoch"]
        self.train_acc_list.append(row["train_acc"])
        self.test_acc_list.append(row["test_acc"])
        if self.verbose:
            print(
                "=== epoch:" + str(row["epoch"]) + ", train acc:" + str(row["train_acc"])
                + ", test acc:" + str(row["test_acc"]) + " ==="
            )  # fmt: skip

    def train(self):
        """Run ``max_iter`` iterations, then the final test accuracy on the whole test set."""
        if self.max_iter > 0:
            self.result = train(
                self.network,
                (self.x_train, self.t_train),
                (self.x_test, self.t_test),
                iters=self.max_iter,
                batch_size=self.batch_size,
                optimizer=self.optimizer,
                seed=self.seed,
                state=self.state,
                eval_samples=self.evaluate_sample_num_per_epoch,
                on_step=self._on_step,
                on_epoch=self._on_epoch,
            )
            self.state = self.result.state
            self.seed = self.state.seed
        x_test = np.asarray(self.x_test)
        self.test_acc = evaluate(self.network, x_test, self.t_test)[1]
        if self.verbose:
            print("=============== Final Test Accuracy ===============")
            print("test acc:" + str(self.test_acc))
        return self.result
