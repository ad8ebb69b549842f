"""Small helpers shared by test modules."""

import threading


def run_in_thread(fn, *args):
    """Starts `fn(*args)` in a thread; returns (thread, outcome) where outcome gets
    "result" or "error" once it ends."""
    outcome = {}

    def target():
        try:
            outcome["result"] = fn(*args)
        except BaseException as exc:
            outcome["error"] = exc

    t = threading.Thread(target=target, daemon=True)
    t.start()
    return t, outcome
