"""Worker processes that end with their parent: a `kill -9` of drop leaves no worker running."""

from __future__ import annotations

import os
import threading
import time


def end_with_parent(poll_s: float = 0.5) -> None:
    """Call in a worker process (its pool initializer): the worker exits as soon as its parent is gone.

    A daemon thread watches the parent's pid (a killed parent's children are re-parented, so the pid
    changes). The kernel's PR_SET_PDEATHSIG is not used: it fires when the *thread* that started the
    worker ends, which for a pool's replacement workers is not the parent's end.
    """
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_s)
        os._exit(1)

    threading.Thread(target=watch, name="end-with-parent", daemon=True).start()
