"""--batching_parameters_file: TF Serving's BatchingParameters text proto.

The message itself is declared in declared_protos.py (the tensorflow-serving-api
wheel does not ship it).

Defaults and checks follow bundle_factory_util.cc, batching_session.cc and
shared_batch_scheduler.h.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from google.protobuf import text_format

from tfmodel_server.declared_protos import BatchingParametersProto
from tfmodel_server.flag_files import read_flag_file

DEFAULT_MAX_BATCH_SIZE = 1000
DEFAULT_BATCH_TIMEOUT_MICROS = 0
DEFAULT_MAX_ENQUEUED_BATCHES = 10
DEFAULT_THREAD_POOL_NAME = "batch_threads"


class BatchingConfigError(ValueError):
    """A batching parameters file that cannot be used; the message names the file."""


@dataclass(frozen=True)
class BatchingParams:
    """Effective batching settings (TF Serving defaults applied)."""

    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE
    batch_timeout_micros: int = DEFAULT_BATCH_TIMEOUT_MICROS
    max_enqueued_batches: int = DEFAULT_MAX_ENQUEUED_BATCHES
    num_batch_threads: int = 0  # 0 = the machine's cores (port::MaxParallelism)
    thread_pool_name: str = DEFAULT_THREAD_POOL_NAME
    allowed_batch_sizes: tuple[int, ...] = ()
    pad_variable_length_inputs: bool = False

    @property
    def threads(self) -> int:
        return self.num_batch_threads or default_num_batch_threads()

    def padded_size(self, batch_size: int) -> int:
        """Smallest allowed size >= batch_size (RoundToLowestAllowedBatchSize)."""
        for allowed in self.allowed_batch_sizes:
            if allowed >= batch_size:
                return allowed
        return batch_size


def default_num_batch_threads() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def params_from_proto(proto, source: str = "<batching parameters>") -> BatchingParams:
    """Apply TF Serving's defaults and validation to a parsed BatchingParameters."""

    def wrapped(name: str, default):
        return getattr(proto, name).value if proto.HasField(name) else default

    params = BatchingParams(
        max_batch_size=wrapped("max_batch_size", DEFAULT_MAX_BATCH_SIZE),
        batch_timeout_micros=wrapped("batch_timeout_micros", DEFAULT_BATCH_TIMEOUT_MICROS),
        max_enqueued_batches=wrapped("max_enqueued_batches", DEFAULT_MAX_ENQUEUED_BATCHES),
        num_batch_threads=wrapped("num_batch_threads", 0),
        thread_pool_name=wrapped("thread_pool_name", DEFAULT_THREAD_POOL_NAME),
        allowed_batch_sizes=tuple(int(s) for s in proto.allowed_batch_sizes),
        pad_variable_length_inputs=bool(proto.pad_variable_length_inputs),
    )
    validate(params, source)
    return params


def validate(params: BatchingParams, source: str = "<batching parameters>") -> None:
    def fail(problem: str) -> None:
        raise BatchingConfigError(f"Invalid batching parameters in {source}: {problem}")

    # SharedBatchScheduler::AddQueue / Create checks.
    if params.max_batch_size <= 0:
        fail(f"max_batch_size must be positive; was {params.max_batch_size}")
    if params.batch_timeout_micros < 0:
        fail(f"batch_timeout_micros must be non-negative; was {params.batch_timeout_micros}")
    if params.max_enqueued_batches <= 0:
        fail(f"max_enqueued_batches must be positive; was {params.max_enqueued_batches}")
    if params.num_batch_threads < 0:
        fail(f"num_batch_threads must be positive; was {params.num_batch_threads}")
    sizes = params.allowed_batch_sizes
    if sizes:
        previous = 0
        for size in sizes:
            if size <= previous:
                fail(
                    "allowed_batch_sizes entries must be positive and strictly increasing; "
                    f"got {list(sizes)}"
                )
            previous = size
        if sizes[-1] != params.max_batch_size:
            fail(
                "Last entry in allowed_batch_sizes must match max_batch_size; last entry was "
                f"{sizes[-1]}; expected {params.max_batch_size}"
            )


def parse_batching_parameters(text: str, source: str = "<batching parameters>") -> BatchingParams:
    proto = BatchingParametersProto()
    try:
        text_format.Parse(text, proto)
    except text_format.ParseError as e:
        raise BatchingConfigError(f"Invalid batching parameters in {source}: {e}") from None
    if proto.HasField("num_batch_threads") and proto.num_batch_threads.value <= 0:
        raise BatchingConfigError(
            f"Invalid batching parameters in {source}: num_batch_threads must be positive; "
            f"was {proto.num_batch_threads.value}"
        )
    return params_from_proto(proto, source)


PER_MODEL_BATCHING_FILE = os.path.join("assets.extra", "batching_params.pbtxt")


def per_model_batching_params(version_path: str) -> BatchingParams | None:
    """GetPerModelBatchingParams: a version's own batching_params.pbtxt, or None.

    A file that cannot be read or parsed fails the load, as in TF Serving.
    """
    path = os.path.join(version_path, PER_MODEL_BATCHING_FILE)
    if not os.path.isfile(path):
        return None
    return parse_batching_parameters(
        read_flag_file(path, "per-model batching parameters", BatchingConfigError), path
    )


def load_batching_parameters(path: str | os.PathLike | None) -> BatchingParams:
    """Read --batching_parameters_file; empty path -> TF Serving's defaults."""
    if not path:
        return BatchingParams()
    return parse_batching_parameters(
        read_flag_file(path, "batching parameters file", BatchingConfigError), str(path)
    )
