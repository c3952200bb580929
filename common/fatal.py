"""`FatalError`: a state that no retry and no restart can cure.

The daemons are built to survive: a failing step is retried with backoff, a protocol bug is
logged and counted, systemd restarts a crashed service. That is wrong for the few states
that only the user can fix (today: the key's frame counters are used up, so a new key is
needed). Retrying them logs the same traceback for ever while the service looks alive. Such an
error derives from `FatalError`: the link and the main loop let it through, and the daemon
logs its message once, without a traceback, and exits with the configuration exit code (2),
which the systemd units do not restart.
"""

from __future__ import annotations

__all__ = ["FatalError"]


class FatalError(RuntimeError):
    """Stop the daemon with this message; the user must act (the message says how)."""
