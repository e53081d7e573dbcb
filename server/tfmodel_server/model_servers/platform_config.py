"""--platform_config_file: TF Serving's PlatformConfigMap in place of the session flags.

server.cc BuildAndStart: without the file, the flags build one SessionBundleConfig
for the "tensorflow" platform; with it, that map is read from the file instead and
every flag that fills the SessionBundleConfig is ignored (main.cc's help: "ignored
if --platform_config_file is non-empty"). The "tensorflow" entry's
source_adapter_config is an Any holding a SavedModelBundleSourceAdapterConfig
whose legacy_config is the SessionBundleConfig (platform_config_util.cc).

Here its fields are written into the same ServerOptions fields the flags fill,
so they take the flags' code paths (session ConfigProto, batching, warmup,
TFLite, tags). Fields this server cannot honour stop start-up, named, rather
than being dropped silently. Other platforms than "tensorflow" (TF Serving's
other source adapters, custom ones) are not served here.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from google.protobuf import text_format
from tensorflow_serving.config import platform_config_pb2

from tfmodel_server.flag_files import parse_status_file
from tfmodel_server.flags import ServerOptions

# Generated (scripts/gen_protos.py); their classes are built at import, so typed Any here.
from tfmodel_server.protos import saved_model_bundle_source_adapter_pb2
from tfmodel_server.protos.any_config import AnyConfigError, unpack_registered
from tfmodel_server.servables.tensorflow.session_config import apply_mixed_precision

log = logging.getLogger(__name__)

TENSORFLOW_PLATFORM = "tensorflow"
_ADAPTER: Any = saved_model_bundle_source_adapter_pb2.SavedModelBundleSourceAdapterConfig  # type: ignore[attr-defined]

# SessionBundleConfig fields taken over (each through the flag that sets it).
_HONOURED = frozenset(
    {
        "session_config",
        "batching_parameters",
        "session_run_load_threadpool_index",
        "saved_model_tags",
        "enable_model_warmup",
        "model_warmup_options",
        "enable_session_metadata",
        "remove_unused_fields_from_bundle_metagraph",
        "prefer_tflite_model",
        "num_tflite_interpreters",
        "num_tflite_interpreters_per_pool",
        "num_tflite_pools",
        "enable_per_model_batching_params",
        "mixed_precision",
    }
)
# Fields TF Serving's SavedModelBundle path never acts on either: the two resource
# estimates feed only the resource tracker, whose limit tensorflow_model_server leaves
# unbounded (ServerCore total_model_memory_limit_bytes); in_graph_batching_parameters is
# read by the TFRT factory only; experimental_fixed_input_tensors by no code at all.
_NO_EFFECT_IN_TF_SERVING = frozenset(
    {
        "experimental_transient_ram_bytes_during_load",
        "resource_estimation_uses_validation_result",
        "in_graph_batching_parameters",
        "experimental_fixed_input_tensors",
    }
)
_HONOURED_WARMUP = frozenset({"num_request_iterations", "model_name", "model_version"})

# The flags a platform config replaces: ignored when both are given, as in TF Serving.
REPLACED_FLAGS = (
    "enable_batching",
    "batching_parameters_file",
    "enable_per_model_batching_parameters",
    "tensorflow_session_config_file",
    "per_process_gpu_memory_fraction",
    "tensorflow_session_parallelism",
    "tensorflow_intra_op_parallelism",
    "tensorflow_inter_op_parallelism",
    "saved_model_tags",
    "enable_model_warmup",
    "num_request_iterations_for_warmup",
    "remove_unused_fields_from_bundle_metagraph",
    "prefer_tflite_model",
    "num_tflite_pools",
    "num_tflite_interpreters_per_pool",
    "mixed_precision",
)


class PlatformConfigError(ValueError):
    """A platform config file that cannot be used; the message is a TF Serving status."""


def apply_platform_config_file(options: ServerOptions) -> ServerOptions:
    """The options with the file's SessionBundleConfig in place of the session flags."""
    if not options.platform_config_file:
        return options
    path = options.platform_config_file
    config = read_session_bundle_config(path)
    _warn_ignored_flags(options)
    return session_bundle_options(options, config)


def read_session_bundle_config(path: str) -> Any:
    """Parse the PlatformConfigMap and unpack its "tensorflow" SessionBundleConfig."""
    platform_map = platform_config_pb2.PlatformConfigMap()
    parse_status_file(path, "platform config file", platform_map, PlatformConfigError)
    found: Any = None
    for platform, entry in sorted(platform_map.platform_configs.items()):
        adapter = _unpack_adapter_config(entry.source_adapter_config)
        if platform != TENSORFLOW_PLATFORM:
            raise PlatformConfigError(
                f"INVALID_ARGUMENT: {path}: platform {platform}: only the "
                f"{TENSORFLOW_PLATFORM} platform is served here (model_platform of every model)"
            )
        found = adapter.legacy_config
    if found is None:
        # ServerCore::CreateAdapter for the platform every model here has.
        raise PlatformConfigError(
            f"FAILED_PRECONDITION: PlatformConfigMap has no entry for platform "
            f"{TENSORFLOW_PLATFORM} ({path})"
        )
    _check_honoured(found, path)
    return found


def _unpack_adapter_config(any_config: Any) -> Any:
    """StoragePathSourceAdapterRegistry::CreateFromAny; the one adapter registered here
    is SavedModelBundleSourceAdapter."""
    try:
        return unpack_registered(any_config, _ADAPTER, "source adapter")
    except AnyConfigError as e:
        raise PlatformConfigError(str(e)) from None


def _check_honoured(config: Any, path: str) -> None:
    unsupported = [
        f.name
        for f, _ in config.ListFields()
        if f.name not in _HONOURED and f.name not in _NO_EFFECT_IN_TF_SERVING
    ]
    unsupported += [
        f"model_warmup_options.{f.name}"
        for f, value in config.model_warmup_options.ListFields()
        if f.name not in _HONOURED_WARMUP
        and not (f.name == "num_model_warmup_threads" and value.value <= 1)
    ]
    if unsupported:
        raise PlatformConfigError(
            f"INVALID_ARGUMENT: {path}: SessionBundleConfig field(s) not supported by "
            f"tfmodel-server: {', '.join(unsupported)} (see docs/tflite-and-flags.md)"
        )


def _warn_ignored_flags(options: ServerOptions) -> None:
    defaults = ServerOptions()
    ignored = [
        name
        for name in REPLACED_FLAGS
        if getattr(options, name) != getattr(defaults, name)
        and not (name == "num_tflite_pools")  # filled from the CPUs when 0
    ]
    if ignored:
        log.warning(
            "--platform_config_file is set: ignoring %s (as TF Serving)",
            ", ".join(f"--{name}" for name in ignored),
        )


def session_bundle_options(options: ServerOptions, config: Any) -> ServerOptions:
    """The SessionBundleConfig written into the flag fields (server.cc's mapping, reversed)."""
    session_config = type(config.session_config)()
    session_config.CopyFrom(config.session_config)
    apply_mixed_precision(session_config, config.mixed_precision)
    warmup = config.model_warmup_options
    pools = config.num_tflite_pools or config.num_tflite_interpreters  # factory's fallback
    return dataclasses.replace(
        options,
        session_config_proto=session_config.SerializeToString(),
        enable_batching=config.HasField("batching_parameters"),
        batching_parameters_file="",
        batching_parameters_text=(
            text_format.MessageToString(config.batching_parameters)
            if config.HasField("batching_parameters")
            else ""
        ),
        enable_per_model_batching_parameters=config.enable_per_model_batching_params,
        session_run_load_threadpool_index=(
            config.session_run_load_threadpool_index.value
            if config.HasField("session_run_load_threadpool_index")
            else None
        ),
        saved_model_tags=tuple(config.saved_model_tags) or ("serve",),
        enable_model_warmup=config.enable_model_warmup,
        num_request_iterations_for_warmup=(
            warmup.num_request_iterations.value if warmup.HasField("num_request_iterations") else 1
        ),
        enable_session_metadata=config.enable_session_metadata,
        remove_unused_fields_from_bundle_metagraph=config.remove_unused_fields_from_bundle_metagraph,
        prefer_tflite_model=config.prefer_tflite_model,
        num_tflite_pools=max(1, pools),  # TfLiteSession: max(1, num_pools)
        num_tflite_interpreters_per_pool=max(1, config.num_tflite_interpreters_per_pool),
        mixed_precision=config.mixed_precision,
    )
