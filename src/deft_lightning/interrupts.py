"""SIGTERM / SIGINT: stop at the next batch boundary, keep the last per-epoch checkpoint, exit 143 / 130.

A SLURM preemption or ``kill`` sends SIGTERM; Ctrl+C sends SIGINT. Lightning already stops a running
``fit`` cleanly on SIGTERM (its handler sets ``trainer.received_sigterm``; the loops raise
``SIGTERMException`` at the next batch boundary, after telling the other DDP ranks), but that exception
is a ``SystemExit`` with status 0, and the next phase's trainer would forget the signal. Here:

- :func:`install` registers handlers that remember the first signal. Lightning's own SIGTERM handler,
  registered while a trainer runs, calls this one too. A first SIGINT is turned into that same SIGTERM
  path (so DDP ranks stop together); a second SIGINT interrupts at once.
- :func:`check` raises :class:`Interrupted` between phases (``build_trainer`` calls it).
- ``cli.run_entry`` ends the process with ``128 + signal`` (143, 130) whatever exception the
  interruption surfaced as.

Nothing is written on the signal: ``checkpoints/<phase>/last.ckpt`` is the state after the last completed
epoch (written atomically every epoch), which ``resume`` continues from *exactly*. A mid-epoch state is
deliberately not saved: Lightning cannot resume a plain DataLoader mid-epoch reproducibly (it warns
"resuming from a checkpoint that ended before the epoch ended"), so the interrupted epoch is redone.
"""

from __future__ import annotations

import signal
import sys
from typing import Any

_received: int | None = None
_installed = False


class Interrupted(BaseException):
    """Raised between phases after SIGTERM/SIGINT (a BaseException: no ``except Exception`` swallows it)."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"interrupted by {signal.Signals(signum).name}")
        self.signum = signum


def received() -> int | None:
    """The first SIGTERM/SIGINT this process received, or None."""
    return _received


def exit_status(signum: int) -> int:
    return 128 + int(signum)


def check() -> None:
    if _received is not None:
        raise Interrupted(_received)


def _on_sigterm(signum: int, frame: Any) -> None:
    global _received
    if _received is None:
        _received = signum
        _announce(signum)


def _announce(signum: int) -> None:
    print(f"\nreceived {signal.Signals(signum).name}: stopping at the next batch boundary"
          + (" (Ctrl+C again to stop at once)" if signum == signal.SIGINT else ""), file=sys.stderr, flush=True)


def _on_sigint(signum: int, frame: Any) -> None:
    global _received
    if _received is not None:  # second Ctrl+C: stop now
        raise KeyboardInterrupt
    _received = signum
    _announce(signum)
    # the SIGTERM path: Lightning's handler (while a trainer runs) stops the loops at the next batch
    # boundary on every rank; outside a trainer only the flag above is set, and `check` acts on it
    signal.raise_signal(signal.SIGTERM)


def install() -> None:
    """Register the handlers once per process (main thread only; elsewhere a no-op)."""
    global _installed
    if _installed:
        return
    try:
        signal.signal(signal.SIGTERM, _on_sigterm)
        signal.signal(signal.SIGINT, _on_sigint)
    except ValueError:  # not the main thread
        return
    _installed = True


def reset() -> None:
    """Forget a received signal (tests that run several entries in one process)."""
    global _received
    _received = None
