"""A book-style ``MultiLayerNetExtend`` (chapter 6): how the book's reader writes the net.

Built the way the book builds its nets (an ``OrderedDict`` of layers made
in a loop, a ``params`` dict whose arrays the layers share by reference,
``gradient`` walking the layers backwards, the book's keys and layer names,
weights from the global ``np.random``), and importing nothing but the
layers from one module, so the same class runs on ``scratchprop.numpy`` or
``scratchprop.numba`` by changing that module: what a drop-in user does to
the import line. Written here from the book's description, not copied.
"""

from collections import OrderedDict

import numpy as np


def book_extend_class(M):
    """The book-style net class, its layers taken from module ``M``."""

    class BookMultiLayerNetExtend:
        def __init__(
            self,
            input_size,
            hidden_size_list,
            output_size,
            activation="relu",
            weight_init_std="relu",
            weight_decay_lambda=0,
            use_dropout=False,
            dropout_ration=0.5,
            use_batchnorm=False,
        ):
            self.hidden_layer_num = len(hidden_size_list)
            self.weight_decay_lambda = weight_decay_lambda
            self.use_batchnorm = use_batchnorm
            sizes = [input_size] + list(hidden_size_list) + [output_size]
            self.params = {}
            for idx in range(1, len(sizes)):
                if str(weight_init_std).lower() in ("relu", "he"):
                    scale = np.sqrt(2.0 / sizes[idx - 1])
                elif str(weight_init_std).lower() in ("sigmoid", "xavier"):
                    scale = np.sqrt(1.0 / sizes[idx - 1])
                else:
                    scale = weight_init_std
                self.params["W" + str(idx)] = scale * np.random.randn(sizes[idx - 1], sizes[idx])
                self.params["b" + str(idx)] = np.zeros(sizes[idx])

            activation_layer = {"sigmoid": M.Sigmoid, "relu": M.Relu}
            self.layers = OrderedDict()
            for idx in range(1, self.hidden_layer_num + 1):
                self.layers["Affine" + str(idx)] = M.Affine(
                    self.params["W" + str(idx)], self.params["b" + str(idx)]
                )
                if use_batchnorm:
                    self.params["gamma" + str(idx)] = np.ones(sizes[idx])
                    self.params["beta" + str(idx)] = np.zeros(sizes[idx])
                    self.layers["BatchNorm" + str(idx)] = M.BatchNormalization(
                        self.params["gamma" + str(idx)], self.params["beta" + str(idx)]
                    )
                self.layers["Activation_function" + str(idx)] = activation_layer[activation]()
                if use_dropout:
                    self.layers["Dropout" + str(idx)] = M.Dropout(dropout_ration)
            idx = self.hidden_layer_num + 1
            self.layers["Affine" + str(idx)] = M.Affine(
                self.params["W" + str(idx)], self.params["b" + str(idx)]
            )
            self.last_layer = M.SoftmaxWithLoss()

        def predict(self, x, train_flg=False):
            for key, layer in self.layers.items():
                if "Dropout" in key or "BatchNorm" in key:
                    x = layer.forward(x, train_flg)
                else:
                    x = layer.forward(x)
            return x

        def loss(self, x, t, train_flg=False):
            y = self.predict(x, train_flg)
            weight_decay = 0
            for idx in range(1, self.hidden_layer_num + 2):
                W = self.params["W" + str(idx)]
                weight_decay += 0.5 * self.weight_decay_lambda * np.sum(W**2)
            return self.last_layer.forward(y, t) + weight_decay

        def accuracy(self, x, t):
            y = np.argmax(self.predict(x, train_flg=False), axis=1)
            if t.ndim != 1:
                t = np.argmax(t, axis=1)
            return np.sum(y == t) / float(x.shape[0])

        def gradient(self, x, t):
            self.loss(x, t, train_flg=True)
            dout = self.last_layer.backward(1)
            for layer in reversed(list(self.layers.values())):
                dout = layer.backward(dout)
            grads = {}
            for idx in range(1, self.hidden_layer_num + 2):
                affine = self.layers["Affine" + str(idx)]
                grads["W" + str(idx)] = affine.dW + self.weight_decay_lambda * self.params["W" + str(idx)]
                grads["b" + str(idx)] = affine.db
                if self.use_batchnorm and idx != self.hidden_layer_num + 1:
                    grads["gamma" + str(idx)] = self.layers["BatchNorm" + str(idx)].dgamma
                    grads["beta" + str(idx)] = self.layers["BatchNorm" + str(idx)].dbeta
            return grads

    return BookMultiLayerNetExtend
