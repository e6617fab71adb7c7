"""The book's notebook ``TwoLayerNet`` (chapter 5, ``two_layer_net.py``), verbatim.

Only the layer import is parametrised: :func:`book_net_class` builds the
class against ``scratchprop.numpy`` or ``scratchprop.numba`` (or any module
with the layers), exactly as a user would by editing that one import line.
Shared by the equivalence tests and the benchmarks (`bench/booknet.py` loads this file).
"""

BOOK_NET_SOURCE = """
import numpy as np
from MODULE import Affine, Relu, SoftmaxWithLoss, numerical_gradient
from collections import OrderedDict


class TwoLayerNet:

    def __init__(self, input_size, hidden_size, output_size, weight_init_std = 0.01):
        # 重みの初期化
        self.params = {}
        self.params['W1'] = weight_init_std * np.random.randn(input_size, hidden_size)
        self.params['b1'] = np.zeros(hidden_size)
        self.params['W2'] = weight_init_std * np.random.randn(hidden_size, output_size)
        self.params['b2'] = np.zeros(output_size)

        # レイヤの生成
        self.layers = OrderedDict()
        self.layers['Affine1'] = Affine(self.params['W1'], self.params['b1'])
        self.layers['Relu1'] = Relu()
        self.layers['Affine2'] = Affine(self.params['W2'], self.params['b2'])

        self.lastLayer = SoftmaxWithLoss()

    def predict(self, x):
        for layer in self.layers.values():
            x = layer.forward(x)

        return x

    # x:入力データ, t:教師データ
    def loss(self, x, t):
        y = self.predict(x)
        return self.lastLayer.forward(y, t)

    def accuracy(self, x, t):
        y = self.predict(x)
        y = np.argmax(y, axis=1)
        if t.ndim != 1 : t = np.argmax(t, axis=1)

        accuracy = np.sum(y == t) / float(x.shape[0])
        return accuracy

    # x:入力データ, t:教師データ
    def numerical_gradient(self, x, t):
        loss_W = lambda W: self.loss(x, t)

        grads = {}
        grads['W1'] = numerical_gradient(loss_W, self.params['W1'])
        grads['b1'] = numerical_gradient(loss_W, self.params['b1'])
        grads['W2'] = numerical_gradient(loss_W, self.params['W2'])
        grads['b2'] = numerical_gradient(loss_W, self.params['b2'])

        return grads

    def gradient(self, x, t):
        # forward
        self.loss(x, t)

        # backward
        dout = 1
        dout = self.lastLayer.backward(dout)

        layers = list(self.layers.values())
        layers.reverse()
        for layer in layers:
            dout = layer.backward(dout)

        # 設定
        grads = {}
        grads['W1'], grads['b1'] = self.layers['Affine1'].dW, self.layers['Affine1'].db
        grads['W2'], grads['b2'] = self.layers['Affine2'].dW, self.layers['Affine2'].db

        return grads
"""

_CLASSES = {}


def book_net_class(module="scratchprop.numba"):
    """The book's ``TwoLayerNet`` with ``from <module> import Affine, Relu, SoftmaxWithLoss, ...``."""
    if module not in _CLASSES:
        ns = {"__name__": f"booknet_{module.replace('.', '_')}"}
        exec(compile(BOOK_NET_SOURCE.replace("MODULE", module), f"<book TwoLayerNet: {module}>", "exec"), ns)
        _CLASSES[module] = ns["TwoLayerNet"]
    return _CLASSES[module]


def book_train_step(network, x_batch, t_batch, learning_rate):
    """The book's training-loop body: gradient, then ``params[key] -= lr * grad[key]``."""
    grad = network.gradient(x_batch, t_batch)
    for key in ("W1", "b1", "W2", "b2"):
        network.params[key] -= learning_rate * grad[key]
