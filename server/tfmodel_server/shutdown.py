"""The last-resort exit deadline of the SIGTERM sequence.

The drain is bounded (gRPC cancels calls past its grace, REST connections are
aborted at the deadline), but a TensorFlow call cannot be interrupted and the
interpreter joins executor threads at exit. So once the drain starts, a daemon
timer ends the process at drain timeout + EXIT_MARGIN_SECONDS whatever is still
running: the pod's terminationGracePeriodSeconds can then be computed, and a
SIGKILL never arrives mid-unload.
"""

from __future__ import annotations

import logging
import os
import sys
import threading

log = logging.getLogger(__name__)

# Unload and interpreter teardown after a full drain take well under this.
EXIT_MARGIN_SECONDS = 2.0
# Not 0: the process did not finish cleanly.
FORCED_EXIT_CODE = 1


def arm_exit_deadline(seconds: float) -> threading.Timer:
    """Exit the process `seconds` from now unless the returned timer is cancelled."""

    def fire() -> None:
        log.error(
            "shutdown still running %.1fs after the drain began (a TensorFlow call that "
            "does not return?): exiting now",
            seconds,
        )
        sys.stderr.flush()
        os._exit(FORCED_EXIT_CODE)

    timer = threading.Timer(seconds, fire)
    timer.daemon = True
    timer.start()
    return timer
