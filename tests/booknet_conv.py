"""Book-style ``SimpleConvNet`` (chapter 7) and ``DeepConvNet`` (chapter 8): how the book's reader writes them.

Built the way the book builds them (``SimpleConvNet``: an ``OrderedDict`` of
named layers; ``DeepConvNet``: a plain list, ``Dropout`` found with
``isinstance``; a ``params`` dict the layers share by reference, weights
from the global ``np.random``, ``gradient`` walking the layers backwards),
importing nothing but the layers from one module, so the same class runs on
``scratchprop.numpy`` or ``scratchprop.numba`` by changing that module: what a
drop-in user does to the import line. Written here from the book's
description, not copied.
"""

from collections import OrderedDict

import numpy as np


def book_simple_convnet_class(M):
    """The book-style SimpleConvNet class, its layers taken from module ``M``."""

    class BookSimpleConvNet:
        def __init__(self, input_dim=(1, 28, 28), conv_param=None, hidden_size=100, output_size=10, std=0.01):
            p = conv_param or {"filter_num": 30, "filter_size": 5, "pad": 0, "stride": 1}
            fn, fs = p["filter_num"], p["filter_size"]
            conv_out = (input_dim[1] - fs + 2 * p["pad"]) // p["stride"] + 1
            pool_out = fn * (conv_out // 2) * (conv_out // 2)
            self.params = {
                "W1": std * np.random.randn(fn, input_dim[0], fs, fs),
                "b1": np.zeros(fn),
                "W2": std * np.random.randn(pool_out, hidden_size),
                "b2": np.zeros(hidden_size),
                "W3": std * np.random.randn(hidden_size, output_size),
                "b3": np.zeros(output_size),
            }
            self.layers = OrderedDict()
            self.layers["Conv1"] = M.Convolution(self.params["W1"], self.params["b1"], p["stride"], p["pad"])
            self.layers["Relu1"] = M.Relu()
            self.layers["Pool1"] = M.Pooling(pool_h=2, pool_w=2, stride=2)
            self.layers["Affine1"] = M.Affine(self.params["W2"], self.params["b2"])
            self.layers["Relu2"] = M.Relu()
            self.layers["Affine2"] = M.Affine(self.params["W3"], self.params["b3"])
            self.last_layer = M.SoftmaxWithLoss()

        def predict(self, x):
            for layer in self.layers.values():
                x = layer.forward(x)
            return x

        def loss(self, x, t):
            return self.last_layer.forward(self.predict(x), t)

        def accuracy(self, x, t, batch_size=100):
            acc = 0.0
            for i in range(int(x.shape[0] / batch_size)):
                y = self.predict(x[i * batch_size : (i + 1) * batch_size])
                acc += np.sum(np.argmax(y, axis=1) == t[i * batch_size : (i + 1) * batch_size])
            return acc / x.shape[0]

        def gradient(self, x, t):
            self.loss(x, t)
            dout = self.last_layer.backward(1)
            for layer in reversed(list(self.layers.values())):
                dout = layer.backward(dout)
            grads = {}
            for i, name in enumerate(("Conv1", "Affine1", "Affine2"), 1):
                grads[f"W{i}"] = self.layers[name].dW
                grads[f"b{i}"] = self.layers[name].db
            return grads

    return BookSimpleConvNet


def book_deep_convnet_class(M):
    """The book-style DeepConvNet class (1x28x28 input), its layers taken from module ``M``."""

    filters = [(16, 1), (16, 1), (32, 1), (32, 2), (64, 1), (64, 1)]  # (filter_num, pad), 3x3, stride 1

    class BookDeepConvNet:
        def __init__(self, hidden_size=50, output_size=10):
            pre_node_nums = np.array([1 * 9, 16 * 9, 16 * 9, 32 * 9, 32 * 9, 64 * 9, 64 * 4 * 4, hidden_size])
            scales = np.sqrt(2.0 / pre_node_nums)
            self.params = {}
            channels = 1
            for i, (fn, _) in enumerate(filters):
                self.params[f"W{i + 1}"] = scales[i] * np.random.randn(fn, channels, 3, 3)
                self.params[f"b{i + 1}"] = np.zeros(fn)
                channels = fn
            self.params["W7"] = scales[6] * np.random.randn(64 * 4 * 4, hidden_size)
            self.params["b7"] = np.zeros(hidden_size)
            self.params["W8"] = scales[7] * np.random.randn(hidden_size, output_size)
            self.params["b8"] = np.zeros(output_size)

            self.layers = []
            for i, (_, pad) in enumerate(filters):
                self.layers.append(M.Convolution(self.params[f"W{i + 1}"], self.params[f"b{i + 1}"], 1, pad))
                self.layers.append(M.Relu())
                if i % 2 == 1:
                    self.layers.append(M.Pooling(pool_h=2, pool_w=2, stride=2))
            self.layers.append(M.Affine(self.params["W7"], self.params["b7"]))
            self.layers.append(M.Relu())
            self.layers.append(M.Dropout(0.5))
            self.layers.append(M.Affine(self.params["W8"], self.params["b8"]))
            self.layers.append(M.Dropout(0.5))
            self.last_layer = M.SoftmaxWithLoss()

        def predict(self, x, train_flg=False):
            for layer in self.layers:
                x = layer.forward(x, train_flg) if isinstance(layer, M.Dropout) else layer.forward(x)
            return x

        def loss(self, x, t):
            return self.last_layer.forward(self.predict(x, train_flg=True), t)

        def accuracy(self, x, t, batch_size=100):
            acc = 0.0
            for i in range(int(x.shape[0] / batch_size)):
                tx, tt = x[i * batch_size : (i + 1) * batch_size], t[i * batch_size : (i + 1) * batch_size]
                acc += np.sum(np.argmax(self.predict(tx, train_flg=False), axis=1) == tt)
            return acc / x.shape[0]

        def gradient(self, x, t):
            self.loss(x, t)
            dout = self.last_layer.backward(1)
            for layer in reversed(self.layers):
                dout = layer.backward(dout)
            grads = {}
            for i, idx in enumerate((0, 2, 5, 7, 10, 12, 15, 18), 1):
                grads[f"W{i}"] = self.layers[idx].dW
                grads[f"b{i}"] = self.layers[idx].db
            return grads

    return BookDeepConvNet
