"""Stop requests for a training process, caught from its first line.

``python -m resnet_core`` installs these handlers before it imports torch (seconds on a busy
server), so SIGTERM or Ctrl-C during start-up becomes a request that the engine honours after
its next batch, saving ``last.pt``, instead of killing the run half-made. A second Ctrl-C
means it: the default handler returns and Python raises KeyboardInterrupt.
"""

from __future__ import annotations

import signal

_requested = False


def _on_signal(signum, frame) -> None:
    global _requested
    if _requested and signum == signal.SIGINT:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        raise KeyboardInterrupt
    _requested = True


def install() -> None:
    """Catch SIGTERM and SIGINT (main thread only: Python allows handlers nowhere else)."""
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_signal)
        signal.signal(signal.SIGINT, _on_signal)
        # ``runs.spawn`` starts trainers with both blocked; one that came early is delivered now.
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})


def requested() -> bool:
    return _requested
