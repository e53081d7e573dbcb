"""Loads one SavedModel version dir into a Servable (runs in a worker thread).

A TF1 Session in its own Graph via tf.compat.v1.saved_model.loader.load works
for both TF1-builder and tf.saved_model.save exports, and keeps the
MetaGraphDef's signature_def map for the cheap make_callable call path.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import grpc

from tfmodel_server.errors import ServingError
from tfmodel_server.servables.tensorflow.saved_model_files import has_saved_model
from tfmodel_server.servables.tensorflow.servable import (
    Servable,
    status_code_for_tf_error,
    tf_error_message,
)

log = logging.getLogger(__name__)

# Loads are rare; serialising them keeps TF1 graph import + restore off the
# untested path of several imports at once (and bounds peak load memory).
_IMPORT_LOCK = threading.Lock()


@dataclass(frozen=True)
class LoaderOptions:
    tags: tuple[str, ...] = ("serve",)
    intra_op_parallelism: int = 0
    inter_op_parallelism: int = 0


def parse_saved_model_tags(text: str) -> tuple[str, ...]:
    """--saved_model_tags: comma-separated, empty parts dropped."""
    return tuple(t.strip() for t in text.split(",") if t.strip())


class SavedModelLoader:
    """Loads SavedModel version dirs with fixed tags and session options."""

    def __init__(self, options: LoaderOptions | None = None) -> None:
        self.options = options or LoaderOptions()

    def load(self, name: str, version: int, path: str) -> Servable:
        return load_saved_model(
            name,
            version,
            path,
            tags=self.options.tags,
            intra_op_parallelism=self.options.intra_op_parallelism,
            inter_op_parallelism=self.options.inter_op_parallelism,
        )


def load_saved_model(
    name: str,
    version: int,
    path: str,
    tags: Sequence[str] = ("serve",),
    intra_op_parallelism: int = 0,
    inter_op_parallelism: int = 0,
) -> Servable:
    """Blocking load; raises ServingError with TF's message on failure."""
    import tensorflow as tf

    if not has_saved_model(path):
        raise ServingError(
            grpc.StatusCode.NOT_FOUND,
            f"Could not find SavedModel .pb or .pbtxt at supplied export directory path: {path}",
        )
    v1 = tf.compat.v1
    graph = tf.Graph()
    config = v1.ConfigProto(
        intra_op_parallelism_threads=intra_op_parallelism,
        inter_op_parallelism_threads=inter_op_parallelism,
        allow_soft_placement=True,
    )
    session = v1.Session(graph=graph, config=config)
    try:
        with _IMPORT_LOCK, graph.as_default():
            restoring: Any = session
            if os.environ.get(LOAD_PRIORITY_ENV, "low") != "normal":
                restoring = _LowPriorityRuns(session, v1.RunOptions(inter_op_thread_pool=-1))
            meta_graph_def = v1.saved_model.loader.load(restoring, list(tags), path)
        graph.finalize()  # no accidental graph growth per request
    except Exception as e:
        session.close()
        raise _load_error(e, path, tags) from None
    log.info("Loaded servable %s version %d from %s", name, version, path)
    return Servable(name, version, path, session, graph, meta_graph_def)


# Nice value of the thread that restores variables. 0: at nice 19 the restore,
# descheduled on a busy node while it held a lock serving threads need, gave
# single stalls of 450-690 ms (priority inversion); one thread at normal
# priority held the target (docs/churn-and-workers.md).
LOAD_NICE = 0
# "normal" restores on the serving inter-op pool at normal priority, as before
# (bench/neighbour_load.py --compare measures both).
LOAD_PRIORITY_ENV = "TFMODEL_LOAD_PRIORITY"
LOAD_NICE_ENV = "TFMODEL_LOAD_NICE"  # overrides LOAD_NICE (bench/neighbour_load.py)


class _LowPriorityRuns:
    """The session as the SavedModel loader sees it: every run (the variables'
    restore, the init ops) executes in a thread of its own, and in that thread
    only (RunOptions.inter_op_thread_pool = -1, "the caller thread"), not on
    the inter-op pool that serves requests. So reading a large checkpoint takes
    one core, not every thread the serving pool has (issue 21: a 512 MB model
    loading next door). A thread of its own so that TFMODEL_LOAD_NICE can lower
    its priority: a raised nice value cannot be lowered again without
    CAP_SYS_NICE.
    """

    def __init__(self, session: Any, run_options: Any) -> None:
        self._session = session
        self._run_options = run_options

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)

    def run(self, fetches: Any, feed_dict: Any = None, options: Any = None, **kwargs: Any) -> Any:
        result: list[Any] = []
        error: list[BaseException] = []

        def target() -> None:
            try:
                nice = int(os.environ.get(LOAD_NICE_ENV, LOAD_NICE))
                if nice:
                    os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
            except OSError:
                pass  # not permitted here: run at normal priority
            try:
                result.append(
                    self._session.run(
                        fetches, feed_dict, options=options or self._run_options, **kwargs
                    )
                )
            except BaseException as e:
                error.append(e)

        thread = threading.Thread(target=target, name="tf-load-run")
        thread.start()
        thread.join()
        if error:
            raise error[0]
        return result[0]


def _load_error(error: Exception, path: str, tags: Sequence[str]) -> ServingError:
    message = tf_error_message(error)
    code = status_code_for_tf_error(error)
    if code == grpc.StatusCode.INTERNAL:
        if "could not be found in SavedModel" in message:
            code = grpc.StatusCode.NOT_FOUND
            message = (
                f"Could not find meta graph def matching supplied tags: {{ {' '.join(tags)} }}. "
                "To inspect available tag-sets in the SavedModel, please use the SavedModel "
                f"CLI: `saved_model_cli` ({message})"
            )
        elif isinstance(error, (OSError, ValueError)) or "parse" in message.lower():
            code = grpc.StatusCode.DATA_LOSS
    if path not in message:
        message = f"{message} (SavedModel at {path})"
    return ServingError(code, message)
