"""Command line of tfmodel-server: tensorflow_model_server's flag names and defaults.

Both `--flag=value` and `--flag value` work; boolean flags accept a bare
`--flag` or `--flag=true|false` as absl flags do.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

# tensorflow_model_server's main() returns -1 for a bad flag value and for a
# failed start-up: exit status 255.
USAGE_EXIT_CODE = 255
STARTUP_FAILURE_EXIT_CODE = 255
EVENT_LOOPS = ("asyncio", "uvloop")

log = logging.getLogger(__name__)

# Same value as codecs.limits.DEFAULT_MAX_REQUEST_DECODED_BYTES (flags sit below codecs).
DEFAULT_MAX_REQUEST_DECODED_BYTES = 1 << 30


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("true", "1", "yes", "t"):
        return True
    if lowered in ("false", "0", "no", "f"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


@dataclass
class ServerOptions:
    port: int = 8500
    rest_api_port: int = 8501
    bind_address: str = "0.0.0.0"
    model_name: str = "default"
    model_base_path: str = ""
    model_config_file: str = ""
    model_config_file_poll_wait_seconds: int = 0
    file_system_poll_wait_seconds: float = 1.0
    allow_version_labels_for_unavailable_models: bool = False
    max_num_load_retries: int = 5
    load_retry_interval_micros: int = 60_000_000
    saved_model_tags: tuple[str, ...] = ("serve",)
    rest_api_timeout_in_ms: int = 30_000
    grpc_max_threads: int = 0
    grpc_channel_arguments: dict[str, str] = field(default_factory=dict)
    enable_grpc_healthcheck_service: bool = False
    enable_batching: bool = False
    batching_parameters_file: str = ""
    enable_model_warmup: bool = True
    num_request_iterations_for_warmup: int = 1
    monitoring_config_file: str = ""
    enable_serialization_as_tensor_content: bool = False
    enable_signature_method_name_check: bool = False
    tensorflow_intra_op_parallelism: int = 0
    tensorflow_inter_op_parallelism: int = 0
    workers: int = 1
    event_loop: str = "uvloop"
    drain_timeout_seconds: float = 30.0
    traffic_split_file: str = ""
    # --- object storage (see _add_object_store_flags) ---
    model_cache_dir: str = "/tmp/tfmodel-model-cache"
    s3_addressing_style: str = "auto"
    # --- drop-in fidelity block (see _add_fidelity_flags) ---
    grpc_socket_path: str = ""
    ssl_config_file: str = ""
    rest_api_enable_cors_support: bool = False
    enable_profiler: bool = True
    listen_before_models_load: bool = False
    auth_token_file: str = ""
    enable_reload_config_rpc: bool = True
    # --- request limits (see _add_request_limit_flags) ---
    max_request_decoded_bytes: int = DEFAULT_MAX_REQUEST_DECODED_BYTES
    # --- connection limits and shutdown (see _add_limit_flags) ---
    shutdown_readiness_delay_seconds: float = 0.0
    rest_api_header_timeout_seconds: float = 10.0
    rest_api_body_timeout_seconds: float = 60.0
    rest_api_idle_timeout_seconds: float = 75.0
    rest_api_max_connections: int = 1000


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="tfmodel-server",
        description="A drop-in for tensorflow_model_server: serves TF SavedModels over "
        "TF Serving's gRPC and REST APIs.",
    )
    flag_bool: dict[str, Any] = {"type": _parse_bool, "nargs": "?", "const": True}
    p.add_argument("--port", type=int, default=8500, help="gRPC port (0 disables gRPC)")
    p.add_argument(
        "--rest_api_port", type=int, default=8501, help="HTTP/REST port (0 disables REST)"
    )
    p.add_argument("--bind_address", default="0.0.0.0", help="address both ports listen on")
    p.add_argument("--model_name", default="default", help="name of the single model to serve")
    p.add_argument("--model_base_path", default="", help="base path of the single model")
    p.add_argument(
        "--model_config_file",
        default="",
        help="ModelServerConfig text proto; overrides --model_name/--model_base_path",
    )
    p.add_argument(
        "--model_config_file_poll_wait_seconds",
        type=int,
        default=0,
        help="re-read --model_config_file this often (0 = read once)",
    )
    p.add_argument(
        "--file_system_poll_wait_seconds",
        type=float,
        default=1.0,
        help="poll model base paths for versions this often (0 = once, <0 = never)",
    )
    p.add_argument("--allow_version_labels_for_unavailable_models", default=False, **flag_bool)
    p.add_argument("--max_num_load_retries", type=int, default=5)
    p.add_argument("--load_retry_interval_micros", type=int, default=60_000_000)
    p.add_argument("--saved_model_tags", default="serve", help="comma-separated MetaGraphDef tags")
    p.add_argument("--rest_api_timeout_in_ms", type=int, default=30_000)
    p.add_argument("--rest_api_num_threads", type=int, default=0, help="accepted for compatibility")
    p.add_argument("--grpc_max_threads", type=int, default=0, help="threads running TF calls")
    p.add_argument("--grpc_channel_arguments", default="", help="k=v,k=v gRPC server arguments")
    p.add_argument("--enable_grpc_healthcheck_service", default=False, **flag_bool)
    p.add_argument("--enable_batching", default=False, **flag_bool)
    p.add_argument("--batching_parameters_file", default="")
    p.add_argument("--enable_model_warmup", default=True, **flag_bool)
    p.add_argument("--num_request_iterations_for_warmup", type=int, default=1)
    p.add_argument("--monitoring_config_file", default="")
    p.add_argument("--enable_signature_method_name_check", default=False, **flag_bool)
    p.add_argument(
        "--enable_serialization_as_tensor_content",
        default=False,
        help="numeric outputs in tensor_content; the default (false, as in "
        "tensorflow_model_server) fills float_val etc., which clients such as "
        "mnist_client.py read",
        **flag_bool,
    )
    p.add_argument("--tensorflow_intra_op_parallelism", type=int, default=0)
    p.add_argument("--tensorflow_inter_op_parallelism", type=int, default=0)
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="server processes sharing the ports via SO_REUSEPORT",
    )
    p.add_argument(
        "--event_loop",
        choices=EVENT_LOOPS,
        default="uvloop",
        help="the event loop gRPC and REST run on (tfmodel only; uvloop measured 1.13x "
        "asyncio's REST throughput with a lower p99, gRPC equal: bench/event_loop.py)",
    )
    p.add_argument(
        "--drain_timeout_seconds",
        type=float,
        default=30.0,
        help="on SIGTERM, wait this long for in-flight requests",
    )
    p.add_argument(
        "--traffic_split_file",
        default="",
        help="tfmodel: JSON canary split, re-read every --model_config_file_poll_wait_seconds: "
        '{"models": {NAME: {"canaryPercent": P}}} sends P%% of requests for the stable label '
        "(or for no version or label) to the canary label's version",
    )
    _add_fidelity_flags(p, flag_bool)
    _add_object_store_flags(p)
    _add_request_limit_flags(p)
    _add_limit_flags(p)
    return p


def _add_object_store_flags(p: argparse.ArgumentParser) -> None:
    """tfmodel: s3:// base paths (endpoint, region, credentials: the AWS SDK env vars/files)."""
    p.add_argument(
        "--model_cache_dir",
        default="/tmp/tfmodel-model-cache",
        help="tfmodel: where versions of s3:// base paths are downloaded and loaded from; "
        "kept across restarts and reused when the store's listing still matches",
    )
    p.add_argument(
        "--s3_addressing_style",
        choices=("auto", "path", "virtual"),
        default="auto",
        help="tfmodel: S3 bucket addressing; path (http://host/bucket/key) for stores "
        "without virtual-hosted buckets",
    )


def _add_request_limit_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--max_request_decoded_bytes",
        type=int,
        default=DEFAULT_MAX_REQUEST_DECODED_BYTES,
        help="largest total size of the tensors one request may decode to (checked from "
        "declared shapes before allocating; also bounds REST bodies); default 1 GiB",
    )


# --- drop-in fidelity block ---------------------------------------------------
# Every other flag `tensorflow_model_server --help` lists (TF Serving's
# main.cc), then tfmodel's own security and start-up extras.

# Flags that have no effect in this server (GPU, TPU, TFLite, XLA, TF's own
# caches and thread pools): accepted, and a warning names them when set.
# name -> (type, default, why it has no effect)
NO_EFFECT_FLAGS: dict[str, tuple[object, object, str]] = {
    "enable_per_model_batching_parameters": (bool, False, "per-model batching files"),
    "num_load_threads": (int, 0, "loads run on one worker thread"),
    "num_unload_threads": (int, 0, "unloads run on one worker thread"),
    "flush_filesystem_caches": (bool, True, "no filesystem cache to flush"),
    "tensorflow_session_parallelism": (int, 0, "use --tensorflow_intra/inter_op_parallelism"),
    "tensorflow_session_config_file": (str, "", "session ConfigProto files"),
    "use_alts_credentials": (bool, False, "Google ALTS"),
    "platform_config_file": (str, "", "PlatformConfigMap (only the TensorFlow platform)"),
    "per_process_gpu_memory_fraction": (float, 0.0, "GPU"),
    "remove_unused_fields_from_bundle_metagraph": (bool, True, "metagraph trimming"),
    "prefer_tflite_model": (bool, False, "TFLite"),
    "num_tflite_pools": (int, 1, "TFLite"),
    "num_tflite_interpreters_per_pool": (int, 1, "TFLite"),
    "xla_cpu_compilation_enabled": (bool, False, "XLA JIT"),
    "xla_gpu_compilation_enabled": (bool, False, "XLA JIT / GPU"),
    "thread_pool_factory_config_file": (str, "", "custom thread pools"),
    "mixed_precision": (str, "", "mixed precision (MKL)"),
    "skip_initialize_tpu": (bool, False, "TPU"),
}


def _add_fidelity_flags(p: argparse.ArgumentParser, flag_bool: dict) -> None:
    p.add_argument(
        "--grpc_socket_path",
        default="",
        help="also serve gRPC on this UNIX socket (unix:PATH), as TF Serving",
    )
    p.add_argument(
        "--ssl_config_file",
        default="",
        help="SSLConfig text proto (server_key, server_cert, custom_ca, client_verify): "
        "TLS on gRPC, and (a tfmodel addition) on REST with the same files",
    )
    p.add_argument(
        "--rest_api_enable_cors_support",
        default=False,
        help="add CORS headers to REST responses and answer OPTIONS preflights",
        **flag_bool,
    )
    p.add_argument(
        "--enable_profiler",
        default=True,
        help="TensorFlow profiler service on the gRPC port",
        **flag_bool,
    )
    p.add_argument("--version", action="store_true", help="print the version and exit")
    for name, (kind, default, why) in NO_EFFECT_FLAGS.items():
        extra = flag_bool if kind is bool else {"type": kind}
        p.add_argument(
            f"--{name}", default=default, help=f"accepted, no effect here ({why})", **extra
        )
    # tfmodel extras, all off by default (TF Serving's behaviour).
    p.add_argument(
        "--listen_before_models_load",
        default=False,
        help="tfmodel: open the ports at once and load models in the background "
        "(/readyz tells when they are AVAILABLE); TF Serving opens them only after "
        "the initial models have loaded",
        **flag_bool,
    )
    p.add_argument(
        "--auth_token_file",
        default="",
        help="tfmodel: require one of the tokens in this file (one a line, re-read "
        "when it changes) as `authorization` on REST and gRPC; probes stay open",
    )
    p.add_argument(
        "--enable_reload_config_rpc",
        default=True,
        help="tfmodel: false refuses ModelService.HandleReloadConfigRequest",
        **flag_bool,
    )


# --- limits and shutdown block -------------------------------------------------
# tfmodel additions: TF Serving has none of these; the defaults only stop
# clients that hold a socket without sending (see README "Limits and failure
# behaviour").


def _add_limit_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--shutdown_readiness_delay_seconds",
        type=float,
        default=0.0,
        help="tfmodel: on SIGTERM, keep serving this long with /readyz 503 (so load "
        "balancers take the pod out) before draining; 0 drains at once as TF Serving",
    )
    p.add_argument(
        "--rest_api_header_timeout_seconds",
        type=float,
        default=10.0,
        help="tfmodel: a REST request's line and headers must arrive within this many "
        "seconds of its first byte (408, connection closed); 0 = no limit",
    )
    p.add_argument(
        "--rest_api_body_timeout_seconds",
        type=float,
        default=60.0,
        help="tfmodel: a REST request body must arrive within this many seconds after "
        "its headers (408, connection closed); 0 = no limit",
    )
    p.add_argument(
        "--rest_api_idle_timeout_seconds",
        type=float,
        default=75.0,
        help="tfmodel: close a REST connection with no request in progress after this "
        "many seconds (> 0)",
    )
    p.add_argument(
        "--rest_api_max_connections",
        type=int,
        default=1000,
        help="tfmodel: open REST connections beyond this get 503 and are closed "
        "(bounded below the file-descriptor limit); 0 = no limit",
    )


_NON_NEGATIVE = (
    "drain_timeout_seconds",
    "shutdown_readiness_delay_seconds",
    "rest_api_header_timeout_seconds",
    "rest_api_body_timeout_seconds",
    "rest_api_max_connections",
)


def _warn_no_effect(ns: argparse.Namespace) -> None:
    for name, (_, default, why) in NO_EFFECT_FLAGS.items():
        value = getattr(ns, name)
        if value != default:
            print(
                f"tfmodel-server: warning: --{name}={value} has no effect here ({why})",
                file=sys.stderr,
            )


class _Parser(argparse.ArgumentParser):
    """TF Serving's Flags::Parse failure: the usage on stdout, exit 255."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stdout)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        sys.exit(USAGE_EXIT_CODE)


def _parse_channel_arguments(text: str, parser: argparse.ArgumentParser) -> dict[str, str]:
    args: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key:
            parser.error(f"--grpc_channel_arguments: expected key=value, got {item!r}")
        args[key] = value
    return args


def parse_args(argv: Sequence[str] | None = None) -> ServerOptions:
    """Parse and check the command line; exits 2 with a usage message on errors."""
    parser = build_parser()
    ns, unknown = parser.parse_known_args(argv)
    if ns.version:
        print_version()
        sys.exit(0)
    if unknown:
        # main.cc: "unknown argument: X" and the usage, then start-up goes on.
        print(f"unknown argument: {unknown[0]}")
        parser.print_usage(sys.stdout)
    if not ns.model_config_file and not ns.model_base_path:
        startup_failure(
            "INVALID_ARGUMENT: Both server_options.model_base_path and "
            "server_options.model_config_file are empty!"
        )
    if ns.batching_parameters_file and not ns.enable_batching:
        startup_failure(
            "INVALID_ARGUMENT: server_options.batching_parameters_file is set without "
            "setting server_options.enable_batching to true."
        )
    _warn_no_effect(ns)
    if ns.workers < 1:
        parser.error("--workers must be at least 1")
    if ns.max_request_decoded_bytes < 1:
        parser.error("--max_request_decoded_bytes must be at least 1")
    for name in ("port", "rest_api_port"):
        value = getattr(ns, name)
        if not 0 <= value <= 65535:
            parser.error(f"--{name} must be in 0..65535, got {value}")
    for name in _NON_NEGATIVE:
        if getattr(ns, name) < 0:
            parser.error(f"--{name} must be >= 0, got {getattr(ns, name)}")
    if ns.rest_api_idle_timeout_seconds <= 0:
        # aiohttp would then never close a connection that sends nothing.
        parser.error("--rest_api_idle_timeout_seconds must be > 0")
    if ns.port == 0 and ns.rest_api_port == 0:
        parser.error("--port and --rest_api_port are both 0: nothing to serve")
    tags = tuple(t.strip() for t in ns.saved_model_tags.split(",") if t.strip())
    return ServerOptions(
        port=ns.port,
        rest_api_port=ns.rest_api_port,
        bind_address=ns.bind_address,
        model_name=ns.model_name,
        model_base_path=ns.model_base_path,
        model_config_file=ns.model_config_file,
        model_config_file_poll_wait_seconds=ns.model_config_file_poll_wait_seconds,
        file_system_poll_wait_seconds=ns.file_system_poll_wait_seconds,
        allow_version_labels_for_unavailable_models=ns.allow_version_labels_for_unavailable_models,
        max_num_load_retries=ns.max_num_load_retries,
        load_retry_interval_micros=ns.load_retry_interval_micros,
        saved_model_tags=tags or ("serve",),
        rest_api_timeout_in_ms=ns.rest_api_timeout_in_ms,
        grpc_max_threads=ns.grpc_max_threads,
        grpc_channel_arguments=_parse_channel_arguments(ns.grpc_channel_arguments, parser),
        enable_grpc_healthcheck_service=ns.enable_grpc_healthcheck_service,
        enable_batching=ns.enable_batching,
        batching_parameters_file=ns.batching_parameters_file,
        enable_model_warmup=ns.enable_model_warmup,
        num_request_iterations_for_warmup=ns.num_request_iterations_for_warmup,
        monitoring_config_file=ns.monitoring_config_file,
        enable_serialization_as_tensor_content=ns.enable_serialization_as_tensor_content,
        enable_signature_method_name_check=ns.enable_signature_method_name_check,
        tensorflow_intra_op_parallelism=ns.tensorflow_intra_op_parallelism,
        tensorflow_inter_op_parallelism=ns.tensorflow_inter_op_parallelism,
        workers=ns.workers,
        event_loop=ns.event_loop,
        drain_timeout_seconds=ns.drain_timeout_seconds,
        traffic_split_file=ns.traffic_split_file,
        model_cache_dir=ns.model_cache_dir,
        s3_addressing_style=ns.s3_addressing_style,
        grpc_socket_path=ns.grpc_socket_path,
        ssl_config_file=ns.ssl_config_file,
        rest_api_enable_cors_support=ns.rest_api_enable_cors_support,
        enable_profiler=ns.enable_profiler,
        listen_before_models_load=ns.listen_before_models_load,
        auth_token_file=ns.auth_token_file,
        enable_reload_config_rpc=ns.enable_reload_config_rpc,
        max_request_decoded_bytes=ns.max_request_decoded_bytes,
        shutdown_readiness_delay_seconds=ns.shutdown_readiness_delay_seconds,
        rest_api_header_timeout_seconds=ns.rest_api_header_timeout_seconds,
        rest_api_body_timeout_seconds=ns.rest_api_body_timeout_seconds,
        rest_api_idle_timeout_seconds=ns.rest_api_idle_timeout_seconds,
        rest_api_max_connections=ns.rest_api_max_connections,
    )


def startup_failure(status: str) -> None:
    """main.cc's message for a failed BuildAndStart (stdout), then exit 255."""
    print(f"Failed to start server. Error: {status}", flush=True)
    print(f"tfmodel-server: error: {status}", file=sys.stderr, flush=True)
    sys.exit(STARTUP_FAILURE_EXIT_CODE)


def print_version() -> None:
    from importlib.metadata import PackageNotFoundError, version

    def of(package: str) -> str:
        try:
            return version(package)
        except PackageNotFoundError:
            return "unknown"

    print(f"TensorFlow ModelServer: tfmodel-{of('tfmodel')}")
    print(f"TensorFlow Library: {of('tensorflow')}")
