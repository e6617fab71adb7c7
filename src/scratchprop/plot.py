"""Loss and accuracy curves as a PNG (needs matplotlib: ``pip install scratchprop[plot]``)."""

import numpy as np

__all__ = ["PlotUnavailable", "require_matplotlib", "plot_history"]


class PlotUnavailable(RuntimeError):
    """matplotlib is not installed (or cannot be imported)."""


def require_matplotlib():
    """Import matplotlib's Agg machinery or raise :class:`PlotUnavailable`; returns its version."""
    try:
        import matplotlib
        from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: F401
        from matplotlib.figure import Figure  # noqa: F401
    except ImportError as exc:
        raise PlotUnavailable(
            f"--plot needs matplotlib, which is not importable ({exc}); "
            "install it with: pip install 'scratchprop[plot]'"
        ) from None
    return matplotlib.__version__


def plot_history(path, history, loss, iters_per_epoch, title=None):
    """Write a PNG: the per-iteration loss (left) and train/test accuracy per epoch (right).

    ``history`` is :attr:`scratchprop.train.TrainState.history`; ``loss`` the
    per-iteration losses. The file is written atomically. Uses the Agg canvas
    directly, so no GUI backend and no pyplot global state are involved.
    """
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from ._atomic import atomic_write

    fig = Figure(figsize=(10, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax_loss, ax_acc = fig.subplots(1, 2)
    loss = np.asarray(loss, dtype=np.float64)
    if loss.size:
        ax_loss.plot(
            np.arange(1, loss.size + 1) / iters_per_epoch, loss, lw=0.6, alpha=0.6, label="per iteration"
        )
    from .train import epoch_end

    x = [row["iteration"] / iters_per_epoch for row in history]
    mid = [
        (epoch_end(row["epoch"] - 1, iters_per_epoch) + row["iteration"]) / 2 / iters_per_epoch
        for row in history
    ]
    ax_loss.plot(mid, [row["loss"] for row in history], "o-", ms=3, label="epoch mean")
    ax_loss.set(xlabel="epoch", ylabel="loss", title="training loss")
    ax_loss.legend()
    ax_acc.plot(x, [row["train_acc"] for row in history], "o-", ms=3, label="train acc")
    ax_acc.plot(x, [row["test_acc"] for row in history], "s--", ms=3, label="test acc")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", ylim=(0, 1.0), title="accuracy")
    ax_acc.legend(loc="lower right")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    with atomic_write(path) as fh:
        fig.savefig(fh, format="png")
