"""--thread_pool_factory_config_file: the inter-op thread pool request runs use.

TF Serving (server.cc) reads a ThreadPoolFactoryConfig whose Any names a
ThreadPoolFactory in its registry; PredictionServiceImpl then hands that
factory's inter- and intra-op pools to every Predict/Classify/Regress/
MultiInference Session::Run (thread::ThreadPoolOptions). The open-source
tensorflow_model_server registers no factory, so there every such file fails
start-up with "Couldn't find factory for config proto message type ...".

tfmodel-server registers one: `tensorflow.ThreadPoolOptionProto` (TensorFlow's
own message, config.proto: num_threads, global_name). Each SavedModel session
gets that pool appended to its ConfigProto.session_inter_op_thread_pool, and
every request run (the signature callables: Predict, Classify, Regress,
MultiInference, batched runs, warmup) carries RunOptions.inter_op_thread_pool
pointing at it. With a global_name all models share one pool of num_threads
threads; without, each version's session has its own. The intra-op pool cannot
be chosen per run from Python: it stays the session's (intra_op_parallelism_threads
of the session config). TFLite models are not affected (their interpreters run
on their own threads). Loads (restore, init ops) keep their own threads or
session_run_load_threadpool_index.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import text_format

from tfmodel_server.flag_files import parse_status_file
from tfmodel_server.protos.any_config import AnyConfigError, unpack_registered


class ThreadPoolFactoryConfigError(ValueError):
    """The file cannot be used; the message is a TF Serving status ("CODE: text")."""


def read_thread_pool_factory_config(path: str) -> bytes:
    """The serialized tensorflow.ThreadPoolOptionProto the file configures."""
    from tensorflow.core.protobuf import config_pb2

    from tfmodel_server.protos import thread_pool_factory_config_pb2

    config: Any = thread_pool_factory_config_pb2.ThreadPoolFactoryConfig()  # type: ignore[attr-defined]
    parse_status_file(path, "thread pool factory config file", config, ThreadPoolFactoryConfigError)
    try:
        pool = unpack_registered(
            config.thread_pool_factory_config,
            config_pb2.ThreadPoolOptionProto,
            "thread pool factory",
        )
    except AnyConfigError as e:
        raise ThreadPoolFactoryConfigError(f"{e} ({path})") from None
    if pool.num_threads < 0:
        raise ThreadPoolFactoryConfigError(
            f"INVALID_ARGUMENT: {path}: num_threads must be >= 0 (0 = one per core), "
            f"got {pool.num_threads}"
        )
    return pool.SerializeToString()


def add_request_pool(config: Any, pool: bytes) -> Any:
    """Append the pool to a ConfigProto; the RunOptions selecting it for request runs."""
    from tensorflow.core.protobuf import config_pb2

    index = len(config.session_inter_op_thread_pool)
    config.session_inter_op_thread_pool.add().ParseFromString(pool)
    return config_pb2.RunOptions(inter_op_thread_pool=index)


def describe_thread_pool(pool: bytes) -> str:
    from tensorflow.core.protobuf import config_pb2

    return text_format.MessageToString(
        config_pb2.ThreadPoolOptionProto.FromString(pool), as_one_line=True
    )
