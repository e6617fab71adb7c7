"""A user's own notebook net: the book's ``TwoLayerNet`` (ch05/two_layer_net.py), verbatim.

The only change is where the layers come from: the book does
``from common.layers import *`` and ``from common.gradient import
numerical_gradient``; here :func:`book_net_class` takes that module
(``scratchprop.numpy`` or the drop-in ``scratchprop.numba``) and returns the
class with those names bound, exactly as swapping the import would.

The benchmarks keep their own copy (not ``tests/booknet.py``) so that
``pytest bench`` never depends on ``tests/`` being importable.
"""
from collections import OrderedDict

import numpy as np

__all__ = ["book_net_class", "book_net"]


def book_net_class(layers):
    """The book's ``TwoLayerNet`` using ``layers.Affine``, ``.Relu``, ``.SoftmaxWithLoss``, ``.numerical_gradient``."""
    Affine, Relu, SoftmaxWithLoss = layers.Affine, layers.Relu, layers.SoftmaxWithLoss
    numerical_gradient = layers.numerical_gradient

    # ---- the book's class, verbatim (comments translated) -------------------------
    class TwoLayerNet:

        def __init__(self, input_size, hidden_size, output_size, weight_init_std = 0.01):
            # initialise the weights
            self.params = {}
            self.params['W1'] = weight_init_std * np.random.randn(input_size, hidden_size)
            self.params['b1'] = np.zeros(hidden_size)
            self.params['W2'] = weight_init_std * np.random.randn(hidden_size, output_size)
            self.params['b2'] = np.zeros(output_size)

            # build the layers
            self.layers = OrderedDict()
            self.layers['Affine1'] = Affine(self.params['W1'], self.params['b1'])
            self.layers['Relu1'] = Relu()
            self.layers['Affine2'] = Affine(self.params['W2'], self.params['b2'])

            self.lastLayer = SoftmaxWithLoss()

        def predict(self, x):
            for layer in self.layers.values():
                x = layer.forward(x)

            return x

        # x: input data, t: labels
        def loss(self, x, t):
            y = self.predict(x)
            return self.lastLayer.forward(y, t)

        def accuracy(self, x, t):
            y = self.predict(x)
            y = np.argmax(y, axis=1)
            if t.ndim != 1 : t = np.argmax(t, axis=1)

            accuracy = np.sum(y == t) / float(x.shape[0])
            return accuracy

        # x: input data, t: labels
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

            # collect
            grads = {}
            grads['W1'], grads['b1'] = self.layers['Affine1'].dW, self.layers['Affine1'].db
            grads['W2'], grads['b2'] = self.layers['Affine2'].dW, self.layers['Affine2'].db

            return grads
    # ---- end of the book's class --------------------------------------------------

    TwoLayerNet.__qualname__ = f"TwoLayerNet[{getattr(layers, '__name__', layers)}]"
    return TwoLayerNet


def book_net(layers, input_size, hidden_size, output_size, *, dtype=np.float64, seed=0):
    """A book net on ``layers``, its weights drawn with ``np.random.seed(seed)``.

    The book's net is float64. For another ``dtype`` the parameters are cast
    and the two ``Affine`` layers re-pointed at the cast arrays, as a user
    would do by hand, so ``params`` and the layers still share memory (the
    training loop's ``params[key] -= lr * grad[key]`` must reach the layers).
    """
    np.random.seed(seed)
    net = book_net_class(layers)(input_size, hidden_size, output_size)
    dtype = np.dtype(dtype)
    if dtype != np.float64:
        for key in ("W1", "b1", "W2", "b2"):
            net.params[key] = net.params[key].astype(dtype)
        net.layers['Affine1'].W, net.layers['Affine1'].b = net.params['W1'], net.params['b1']
        net.layers['Affine2'].W, net.layers['Affine2'].b = net.params['W2'], net.params['b2']
    return net
