"""scratchprop.Trainer: the book's Trainer on scratchprop.train's loop."""

import numpy as np
import pytest

import scratchprop
from scratchprop import MultiLayerNet, MultiLayerNetExtend, TwoLayerNet
from scratchprop.data import load_mnist
from scratchprop.optimizers import RMSprop


@pytest.fixture(scope="module")
def mnist():
    (x, t), (xt, tt) = load_mnist()
    return (x[:1000], t[:1000]), (xt[:300], tt[:300])


def test_lists_have_the_books_lengths_and_it_prints_the_books_lines(mnist, capsys):
    (x, t), (xt, tt) = mnist
    net = MultiLayerNet(784, [20, 20], 10, backend="numpy", seed=0)
    trainer = scratchprop.Trainer(
        net, x, t, xt, tt, epochs=3, mini_batch_size=100, optimizer="Adam",
        optimizer_param={"lr": 0.01}, evaluate_sample_num_per_epoch=200, seed=0,
    )  # fmt: skip
    assert trainer.iter_per_epoch == 10 and trainer.max_iter == 30
    trainer.train()
    assert len(trainer.train_loss_list) == 30 == trainer.current_iter
    assert len(trainer.train_acc_list) == len(trainer.test_acc_list) == 3 == trainer.current_epoch
    assert trainer.train_loss_list == trainer.state.loss
    # evaluate_sample_num_per_epoch: the first 200 samples of each set, as the book
    assert trainer.train_acc_list[-1] == net.accuracy(x[:200].astype(np.float64), t[:200])
    assert trainer.test_acc_list[-1] == net.accuracy(xt[:200].astype(np.float64), tt[:200])
    assert trainer.test_acc == net.accuracy(xt.astype(np.float64), tt) > 0.7
    out = capsys.readouterr().out.splitlines()
    assert sum(line.startswith("train loss:") for line in out) == 30
    epochs = [line for line in out if line.startswith("=== epoch:")]
    assert len(epochs) == 3 and epochs[0].startswith("=== epoch:1, train acc:") and epochs[0].endswith(" ===")
    assert out[-2:] == ["=============== Final Test Accuracy ===============", f"test acc:{trainer.test_acc}"]


def test_a_fractional_epoch_gives_one_accuracy_per_epoch(mnist):
    (x, t), (xt, tt) = mnist
    net = TwoLayerNet(784, 10, 10, seed=0)
    trainer = scratchprop.Trainer(net, x[:950], t[:950], xt, tt, epochs=3, verbose=False, seed=1)
    trainer.train()
    assert trainer.max_iter == 28 == len(trainer.train_loss_list)  # int(3 * 9.5), as the book
    assert len(trainer.train_acc_list) == 3  # ends of epochs 1, 2 (at 10, 19) and the end (28)
    assert [r["partial"] for r in trainer.state.history] == [False, False, True]


def test_default_optimizer_is_the_books_sgd_from_the_nets_backend(mnist):
    (x, t), (xt, tt) = mnist
    net = MultiLayerNetExtend(784, [10], 10, use_batchnorm=True, backend="numba", seed=0)
    trainer = scratchprop.Trainer(net, x, t, xt, tt, epochs=1, verbose=False, seed=0)
    assert type(trainer.optimizer) is scratchprop.get_backend("numba").SGD and trainer.optimizer.lr == 0.01
    trainer.train()
    first = list(trainer.train_loss_list)
    trainer.train()  # again: max_iter more iterations, the lists continue
    assert len(trainer.train_loss_list) == 20 and trainer.train_loss_list[:10] == first
    assert len(trainer.test_acc_list) == 2 and trainer.state.iteration == 20
    mom = scratchprop.Trainer(net, x, t, xt, tt, optimizer="momentum", optimizer_param={}, verbose=False)
    assert mom.optimizer.lr == 0.01 and mom.optimizer.momentum == 0.9  # the class's defaults
    obj = RMSprop(lr=0.003)
    assert scratchprop.Trainer(net, x, t, xt, tt, optimizer=obj, verbose=False).optimizer is obj
