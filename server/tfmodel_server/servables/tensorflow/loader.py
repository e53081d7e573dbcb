"""Loads one SavedModel version dir into a Servable (runs in a worker thread).

A TF1 Session in its own Graph via tf.compat.v1.saved_model.loader.load works
for both TF1-builder and tf.saved_model.save exports, and keeps the
MetaGraphDef's signature_def map for the cheap make_callable call path.
With --prefer_tflite_model a dir's `model.tflite` is loaded instead
(saved_model_bundle_factory.cc), into a TfLiteSession (tflite.py).

Loads run on the manager's --num_load_threads threads, several at once when it
is > 1 (TF's SavedModel import and restore are thread-safe, as TF Serving's
parallel loads rely on).
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
from tfmodel_server.servables.tensorflow.custom_ops import register_custom_ops
from tfmodel_server.servables.tensorflow.saved_model_files import (
    has_saved_model,
    has_tflite_model,
)
from tfmodel_server.servables.tensorflow.servable import (
    Servable,
    status_code_for_tf_error,
    tf_error_message,
)
from tfmodel_server.servables.tensorflow.thread_pool_factory import add_request_pool

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoaderOptions:
    tags: tuple[str, ...] = ("serve",)
    intra_op_parallelism: int = 0
    inter_op_parallelism: int = 0
    # A serialized tensorflow.ConfigProto every session starts from (session_config.py);
    # the two parallelism fields above override its thread counts when > 0.
    session_config: bytes = b""
    # Keep only the signature_defs of the MetaGraphDef (its GraphDef can be MBs).
    remove_unused_fields_from_bundle_metagraph: bool = False
    prefer_tflite_model: bool = False
    num_tflite_pools: int = 1
    num_tflite_interpreters_per_pool: int = 1
    # SessionBundleConfig.session_run_load_threadpool_index: the
    # session_inter_op_thread_pool the restore and init runs use (None: a thread of
    # their own, see _LowPriorityRuns).
    session_run_load_threadpool_index: int | None = None
    # SessionBundleConfig.enable_session_metadata: the model's name and version in
    # each session's ConfigProto.experimental.session_metadata.
    enable_session_metadata: bool = False
    # --thread_pool_factory_config_file: a serialized tensorflow.ThreadPoolOptionProto,
    # the inter-op pool every request run uses (thread_pool_factory.py).
    request_thread_pool: bytes = b""


def parse_saved_model_tags(text: str) -> tuple[str, ...]:
    """--saved_model_tags: comma-separated, empty parts dropped."""
    return tuple(t.strip() for t in text.split(",") if t.strip())


class SavedModelLoader:
    """Loads SavedModel version dirs with fixed tags and session options."""

    def __init__(self, options: LoaderOptions | None = None) -> None:
        self.options = options or LoaderOptions()

    def load(self, name: str, version: int, path: str) -> Servable:
        opts = self.options
        if opts.prefer_tflite_model and has_tflite_model(path):
            return load_tflite_model(
                name, version, path, opts.num_tflite_pools, opts.num_tflite_interpreters_per_pool
            )
        return load_saved_model(
            name,
            version,
            path,
            tags=opts.tags,
            intra_op_parallelism=opts.intra_op_parallelism,
            inter_op_parallelism=opts.inter_op_parallelism,
            session_config=opts.session_config,
            remove_unused_fields=opts.remove_unused_fields_from_bundle_metagraph,
            load_threadpool_index=opts.session_run_load_threadpool_index,
            session_metadata=opts.enable_session_metadata,
            request_thread_pool=opts.request_thread_pool,
        )


def load_tflite_model(
    name: str, version: int, path: str, num_pools: int = 1, num_interpreters_per_pool: int = 1
) -> Servable:
    """`model.tflite` as a Servable whose session is a pool of TFLite interpreters."""
    from tensorflow.core.protobuf import meta_graph_pb2

    from tfmodel_server.servables.tensorflow.tflite import TfLitePoolOptions, load_tflite_session

    try:
        session = load_tflite_session(path, TfLitePoolOptions(num_pools, num_interpreters_per_pool))
    except ServingError as e:
        raise ServingError(e.code, f"{e.message} (TFLite model at {path})") from None
    except OSError as e:
        raise ServingError(grpc.StatusCode.NOT_FOUND, f"{e.strerror or e}: {path}") from None
    meta_graph_def = meta_graph_pb2.MetaGraphDef()
    for key, signature in session.signature_defs.items():
        meta_graph_def.signature_def[key].CopyFrom(signature)
    log.info(
        "Loaded servable %s version %d from %s (TFLite, %d interpreters)",
        name,
        version,
        path,
        session.pool_size,
    )
    return Servable(name, version, path, session, None, meta_graph_def)


def load_saved_model(
    name: str,
    version: int,
    path: str,
    tags: Sequence[str] = ("serve",),
    intra_op_parallelism: int = 0,
    inter_op_parallelism: int = 0,
    session_config: bytes = b"",
    remove_unused_fields: bool = False,
    load_threadpool_index: int | None = None,
    session_metadata: bool = False,
    request_thread_pool: bytes = b"",
) -> Servable:
    """Blocking load; raises ServingError with TF's message on failure."""
    import tensorflow as tf

    if not has_saved_model(path):
        raise ServingError(
            grpc.StatusCode.NOT_FOUND,
            f"Could not find SavedModel .pb or .pbtxt at supplied export directory path: {path}",
        )
    register_custom_ops()  # TF Text etc., as TF Serving links them in
    v1 = tf.compat.v1
    graph = tf.Graph()
    config = v1.ConfigProto(allow_soft_placement=True)
    if session_config:
        config.MergeFromString(session_config)
    if intra_op_parallelism > 0:
        config.intra_op_parallelism_threads = intra_op_parallelism
    if inter_op_parallelism > 0:
        config.inter_op_parallelism_threads = inter_op_parallelism
    if session_metadata:
        # saved_model_bundle_factory.cc CreateSavedModelBundleWithMetadata.
        config.experimental.session_metadata.name = name
        config.experimental.session_metadata.version = version
    request_run_options = (
        add_request_pool(config, request_thread_pool) if request_thread_pool else None
    )
    session = v1.Session(graph=graph, config=config)
    try:
        # No import lock: --num_load_threads loads versions in parallel.
        with graph.as_default():
            restoring: Any = session
            if load_threadpool_index is not None:
                # bundle_factory_util.cc GetRunOptions: restore and init on that pool.
                restoring = _LowPriorityRuns(
                    session, v1.RunOptions(inter_op_thread_pool=load_threadpool_index)
                )
            elif os.environ.get(LOAD_PRIORITY_ENV, "low") != "normal":
                restoring = _LowPriorityRuns(session, v1.RunOptions(inter_op_thread_pool=-1))
            meta_graph_def = v1.saved_model.loader.load(restoring, list(tags), path)
        graph.finalize()  # no accidental graph growth per request
    except Exception as e:
        session.close()
        raise _load_error(e, path, tags) from None
    if remove_unused_fields:
        # saved_model_bundle_factory.cc: only signature_def is read after the load.
        from tensorflow.core.protobuf import meta_graph_pb2

        trimmed = meta_graph_pb2.MetaGraphDef()
        for key, signature in meta_graph_def.signature_def.items():
            trimmed.signature_def[key].CopyFrom(signature)
        meta_graph_def = trimmed
    log.info("Loaded servable %s version %d from %s", name, version, path)
    servable = Servable(name, version, path, session, graph, meta_graph_def)
    servable.run_options = request_run_options
    return servable


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
