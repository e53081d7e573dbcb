"""Op libraries TF Serving links into tensorflow_model_server, registered here by import.

TF Serving's binary carries the TF Text ops (third_party/tf_text); here they
come from the `tensorflow-text` package (the server image's extra), imported
once before the first SavedModel is imported so a graph using them loads.
Without the package such a graph fails to load with TensorFlow's own
"Op type not registered" message.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import threading

log = logging.getLogger(__name__)

# Python packages whose import registers custom TF ops and kernels.
OP_PACKAGES = ("tensorflow_text",)

_lock = threading.Lock()
_registered: tuple[str, ...] | None = None


def register_custom_ops() -> tuple[str, ...]:
    """Import every installed op package once; returns the ones registered."""
    global _registered
    with _lock:
        if _registered is None:
            found = []
            for package in OP_PACKAGES:
                if importlib.util.find_spec(package) is None:
                    continue
                try:
                    importlib.import_module(package)
                except Exception as e:  # a broken or mismatched wheel: say so, go on
                    log.error("could not register the ops of %s: %s", package, e)
                    continue
                found.append(package)
            _registered = tuple(found)
            if found:
                log.info("registered custom ops from %s", ", ".join(found))
        return _registered
