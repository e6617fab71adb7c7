"""A tiny one-line progress bar for terminals (no dependency, draws nothing when not a TTY)."""

import sys
import time

__all__ = ["ProgressBar"]


def _clock(seconds):
    seconds = int(max(seconds, 0))
    h, rem = divmod(seconds, 3600)
    return f"{h}:{rem // 60:02d}:{rem % 60:02d}" if h else f"{rem // 60}:{rem % 60:02d}"


class ProgressBar:
    """``[=====>     ]  120/500  24%  loss 0.4123  850 it/s  ETA 0:01`` on ``stream``.

    Parameters
    ----------
    stream : file, default sys.stderr
    enabled : bool, optional
        Draw at all; default: only if ``stream`` is a terminal.
    width : int
        Characters inside the brackets.
    min_interval : float
        Seconds between redraws (the last step is always drawn).
    """

    def __init__(self, stream=None, enabled=None, width=28, min_interval=0.1):
        self.stream = sys.stderr if stream is None else stream
        if enabled is None:
            isatty = getattr(self.stream, "isatty", None)
            enabled = bool(isatty and isatty())
        self.enabled = enabled
        self.width = width
        self.min_interval = min_interval
        self._start = None
        self._start_done = 0
        self._last = 0.0
        self._shown = 0

    def update(self, done, total, loss=None, prefix=""):
        """Show ``done`` of ``total`` steps (throttled to ``min_interval``)."""
        if not self.enabled:
            return
        now = time.perf_counter()
        if self._start is None:
            self._start, self._start_done = now, done
        if done < total and now - self._last < self.min_interval:
            return
        self._last = now
        frac = min(max(done / total, 0.0), 1.0) if total else 1.0
        filled = int(frac * self.width)
        bar = "=" * filled + (">" if filled < self.width else "") + " " * (self.width - filled - 1)
        text = f"{prefix}[{bar[: self.width]}] {done}/{total} {frac:4.0%}"
        if loss is not None:
            text += f"  loss {loss:.4f}"
        if done > self._start_done and now > self._start:
            rate = (done - self._start_done) / (now - self._start)
            text += f"  {rate:,.0f} it/s  ETA {_clock((total - done) / rate)}"
        pad = " " * max(self._shown - len(text), 0)
        self.stream.write("\r" + text + pad)
        self.stream.flush()
        self._shown = len(text)

    def clear(self):
        """Erase the bar (before printing a line to the same terminal)."""
        if self.enabled and self._shown:
            self.stream.write("\r" + " " * self._shown + "\r")
            self.stream.flush()
            self._shown = 0
            self._last = 0.0

    close = clear
