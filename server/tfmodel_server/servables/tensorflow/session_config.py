"""The tensorflow.ConfigProto every SavedModel session gets, as server.cc builds it.

Order (server.cc BuildAndStart, saved_model_bundle_factory.cc):
1. --tensorflow_session_config_file (a ConfigProto text proto), if given;
2. gpu_options.per_process_gpu_memory_fraction = --per_process_gpu_memory_fraction
   (always written, 0 meaning TF's default);
3. thread pools: --tensorflow_intra/inter_op_parallelism when either is > 0, else
   --tensorflow_session_parallelism for both (0 = TF's choice); all three set is
   an error;
4. --mixed_precision=bfloat16: the oneDNN auto mixed precision rewrite.
The XLA flags are process-wide: main.cc calls tensorflow::DisableXlaCompilation()
unless one of them is true, so jit_compile functions then fail with a clear status.
"""

from __future__ import annotations

import ctypes
import logging
import os

from google.protobuf import text_format

log = logging.getLogger(__name__)


class SessionConfigError(ValueError):
    """A session config flag or file that cannot be used; the message names it."""


def build_session_config(
    config_file: str = "",
    per_process_gpu_memory_fraction: float = 0.0,
    session_parallelism: int = 0,
    intra_op_parallelism: int = 0,
    inter_op_parallelism: int = 0,
    mixed_precision: str = "",
) -> bytes:
    """The serialized ConfigProto (server.cc's session_bundle_config.session_config)."""
    from tensorflow.core.protobuf import config_pb2

    config = config_pb2.ConfigProto()
    if config_file:
        try:
            with open(config_file, encoding="utf-8") as f:
                text_format.Parse(f.read(), config)
        except OSError as e:
            raise SessionConfigError(
                f"--tensorflow_session_config_file: cannot read {config_file}: {e.strerror or e}"
            ) from None
        except text_format.ParseError as e:
            raise SessionConfigError(
                f"--tensorflow_session_config_file: Error parsing text-format "
                f"tensorflow.ConfigProto in {config_file}: {e}"
            ) from None
    config.gpu_options.per_process_gpu_memory_fraction = per_process_gpu_memory_fraction
    if intra_op_parallelism > 0 and inter_op_parallelism > 0 and session_parallelism > 0:
        raise SessionConfigError(
            "Either configure server_options.tensorflow_session_parallelism or "
            "(server_options.tensorflow_intra_op_parallelism, "
            "server_options.tensorflow_inter_op_parallelism) separately. "
            "You cannot configure all."
        )
    if intra_op_parallelism > 0 or inter_op_parallelism > 0:
        config.intra_op_parallelism_threads = intra_op_parallelism
        config.inter_op_parallelism_threads = inter_op_parallelism
    elif session_parallelism > 0 or not config_file:
        # server.cc writes the session parallelism (0 = auto) over the file's
        # values; keeping the file's own thread counts when the flag is unset is
        # the only way a config file could set them, so that case is spared.
        config.intra_op_parallelism_threads = session_parallelism
        config.inter_op_parallelism_threads = session_parallelism
    apply_mixed_precision(config, mixed_precision)
    return config.SerializeToString()


def apply_mixed_precision(config, mixed_precision: str) -> None:
    """saved_model_bundle_factory.cc: bfloat16 turns on the oneDNN auto mixed precision
    rewrite; any other non-empty value warns and changes nothing."""
    from tensorflow.core.protobuf import rewriter_config_pb2

    if not mixed_precision:
        return
    if mixed_precision == "bfloat16":
        log.info("Running inference with bfloat16 auto mixed precision")
        config.graph_options.rewrite_options.auto_mixed_precision_onednn_bfloat16 = (
            rewriter_config_pb2.RewriterConfig.ON
        )
    else:
        log.warning(
            "%s auto mixed precision is not supported. Valid option: bfloat16", mixed_precision
        )


def describe_session_config(serialized: bytes) -> str:
    """The ConfigProto as one line of text (logged at start-up)."""
    from tensorflow.core.protobuf import config_pb2

    config = config_pb2.ConfigProto()
    config.ParseFromString(serialized)
    return text_format.MessageToString(config, as_one_line=True)


def set_xla_compilation(cpu_enabled: bool, gpu_enabled: bool) -> bool:
    """main.cc: DisableXlaCompilation() unless an XLA flag is on. True if it was called."""
    if cpu_enabled or gpu_enabled:
        return False
    import tensorflow as tf

    library = os.path.join(os.path.dirname(tf.__file__), "libtensorflow_cc.so.2")
    try:
        # tensorflow/compiler/jit/flags.h; exported by the wheel, not wrapped in Python.
        ctypes.CDLL(library).__getattr__("_ZN10tensorflow21DisableXlaCompilationEv")()
    except (OSError, AttributeError) as e:
        log.warning("could not disable XLA compilation (%s): jit_compile models will run", e)
        return False
    return True
