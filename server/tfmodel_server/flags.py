"""Command line of tfmodel-server: tensorflow_model_server's flag names and defaults.

Both `--flag=value` and `--flag value` work; boolean flags accept a bare
`--flag` or `--flag=true|false` as absl flags do.
"""

from __future__ import annotations

import argparse
import logging
import os
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
    # --- TensorFlow runtime block (see _add_tensorflow_flags) ---
    tensorflow_session_parallelism: int = 0
    tensorflow_session_config_file: str = ""
    per_process_gpu_memory_fraction: float = 0.0
    xla_cpu_compilation_enabled: bool = False
    xla_gpu_compilation_enabled: bool = False
    mixed_precision: str = ""
    remove_unused_fields_from_bundle_metagraph: bool = True
    enable_per_model_batching_parameters: bool = False
    num_load_threads: int = 0
    num_unload_threads: int = 0
    flush_filesystem_caches: bool = True
    prefer_tflite_model: bool = False
    num_tflite_pools: int = 0  # 0 = the CPUs this process may run on, as TF Serving
    num_tflite_interpreters_per_pool: int = 1
    platform_config_file: str = ""
    thread_pool_factory_config_file: str = ""
    # Set from --platform_config_file's SessionBundleConfig (model_servers/platform_config.py),
    # never from flags: the ConfigProto used as is, BatchingParameters as text, the pool
    # restore/init runs use (None: their own thread), session metadata in each ConfigProto.
    session_config_proto: bytes = b""
    batching_parameters_text: str = ""
    session_run_load_threadpool_index: int | None = None
    enable_session_metadata: bool = False
    workers: int = 1
    max_retained_unloaded_versions: int = 2
    event_loop: str = "uvloop"
    drain_timeout_seconds: float = 30.0
    traffic_split_file: str = ""
    # --- request logging (tfmodel: ModelConfig.logging_config) ---
    request_log_dir: str = ""
    request_log_max_file_bytes: int = 64 << 20
    request_log_queue_records: int = 1024
    request_log_queue_bytes: int = 64 << 20
    shadow_traffic_percent: float = 0.0
    shadow_max_concurrent: int = 4
    # --- object storage (see _add_object_store_flags) ---
    model_cache_dir: str = "/tmp/tfmodel-model-cache"
    s3_addressing_style: str = "auto"
    # --- drop-in fidelity block (see _add_fidelity_flags) ---
    grpc_socket_path: str = ""
    ssl_config_file: str = ""
    ssl_server_cert_file: str = ""
    ssl_server_key_file: str = ""
    ssl_custom_ca_file: str = ""
    ssl_client_verify: bool = False
    rest_api_enable_cors_support: bool = False
    enable_profiler: bool = True
    listen_before_models_load: bool = False
    auth_token_file: str = ""
    enable_reload_config_rpc: bool = True
    # --- request limits (see _add_request_limit_flags) ---
    max_request_decoded_bytes: int = DEFAULT_MAX_REQUEST_DECODED_BYTES
    max_inflight_request_bytes: int = -1  # derived from the memory limit (admission.py)
    max_inflight_requests: int = 0
    rest_decode_processes: int = -1  # one per core (decode_processes.py)
    # --- connection limits and shutdown (see _add_limit_flags) ---
    shutdown_readiness_delay_seconds: float = 0.0
    rest_api_header_timeout_seconds: float = 10.0
    rest_api_body_timeout_seconds: float = 60.0
    rest_api_idle_timeout_seconds: float = 75.0
    rest_api_max_connections: int = 1000
    # Set by the --workers parent for each worker process (not flags).
    worker_index: int = 0
    worker_dir: str = ""


def serving_marker(worker_dir: str, index: int) -> str:
    """The file a --workers worker creates once it serves (its parent then restarts it
    when it dies; one that dies before serving is a start-up failure)."""
    return os.path.join(worker_dir, f"serving-{index}")


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
        "--max_retained_unloaded_versions",
        type=int,
        default=2,
        help="tfmodel: END versions (unloaded or failed) GET /v1/models and GetModelStatus "
        "keep per model, newest first; older ones and their per-version metric series are "
        "dropped (-1 keeps all, as TF Serving)",
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
        '{"models": {NAME: {"canaryPercent": P, "shadowPercent": S}}} sends P%% of requests for '
        "the stable label (or for no version or label) to the canary label's version and "
        "shadows S%% of the rest on it (docs/shadow-traffic.md)",
    )
    _add_fidelity_flags(p, flag_bool)
    _add_tensorflow_flags(p, flag_bool)
    _add_object_store_flags(p)
    _add_request_limit_flags(p)
    _add_limit_flags(p)
    _add_request_log_flags(p)
    _add_shadow_flags(p)
    return p


def _add_request_log_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--request_log_dir",
        default="",
        help="tfmodel: directory of the request logs that model configs' logging_config asks "
        "for; a relative log_collector_config.filename_prefix (default: the model name) is "
        "taken in it",
    )
    p.add_argument(
        "--request_log_max_file_bytes",
        type=int,
        default=64 << 20,
        help="tfmodel: a request log file is closed and the next one started at this size",
    )
    p.add_argument(
        "--request_log_queue_records",
        type=int,
        default=1024,
        help="tfmodel: sampled requests waiting for the log writer; more are dropped and counted",
    )
    p.add_argument(
        "--request_log_queue_bytes",
        type=int,
        default=64 << 20,
        help="tfmodel: tensor bytes waiting for the log writer; more are dropped and counted",
    )


def _add_shadow_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--shadow_traffic_percent",
        type=float,
        default=0.0,
        help="tfmodel: share (0-100) of the requests `stable` answers that are also run on the "
        "`canary` label's version after the reply is sent (answer compared, never returned); "
        "a model's shadowPercent in --traffic_split_file overrides it",
    )
    p.add_argument(
        "--shadow_max_concurrent",
        type=int,
        default=4,
        help="tfmodel: shadow requests running at once; more are shed and counted",
    )


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
    p.add_argument(
        "--max_inflight_request_bytes",
        type=int,
        default=-1,
        help="tfmodel: prediction requests (REST bodies, gRPC messages; each counted as "
        "at least 64 KiB) in flight at once may total this many bytes; beyond it REST "
        "answers 429 with Retry-After and gRPC RESOURCE_EXHAUSTED, before reading or "
        "decoding. Default -1: derived from the container's memory limit (cgroup v2 "
        "memory.max / v1 memory.limit_in_bytes) as (limit - RSS once the models are "
        "loaded) x 0.25 / 4; no memory limit: no limit, as TF Serving. 0 = no limit",
    )
    p.add_argument(
        "--max_inflight_requests",
        type=int,
        default=0,
        help="tfmodel: prediction requests in flight at once over gRPC and REST together; "
        "beyond it 429 / RESOURCE_EXHAUSTED. 0 (default) = no limit",
    )
    p.add_argument(
        "--rest_decode_processes",
        type=int,
        default=-1,
        help="tfmodel: REST predict bodies of 64 KiB or more are decoded (JSON -> tensors) "
        "in this many processes of their own, at a lower priority, so that decoding never "
        "holds the server's GIL and small requests and probes keep their latency. "
        "Default -1: one per core (divided among --workers); 0 = decode in the server's "
        "threads",
    )


# --- drop-in fidelity block ---------------------------------------------------
# Every other flag `tensorflow_model_server --help` lists (TF Serving's
# main.cc), then tfmodel's own security and start-up extras.

# Flags that have no effect in this server: accepted, and a warning names them
# when set. name -> (type, default, why it has no effect)
NO_EFFECT_FLAGS: dict[str, tuple[object, object, str]] = {
    "use_alts_credentials": (bool, False, "Google ALTS"),
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
    _add_tls_file_flags(p, flag_bool)
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


def _add_tls_file_flags(p: argparse.ArgumentParser, flag_bool: dict) -> None:
    """tfmodel: SSLConfig's fields from PEM files (a mounted kubernetes.io/tls Secret)."""
    p.add_argument(
        "--ssl_server_cert_file",
        default="",
        help="tfmodel: PEM server certificate (chain), instead of --ssl_config_file's "
        "server_cert; re-read when it changes",
    )
    p.add_argument(
        "--ssl_server_key_file",
        default="",
        help="tfmodel: PEM private key of --ssl_server_cert_file; re-read when it changes",
    )
    p.add_argument(
        "--ssl_custom_ca_file",
        default="",
        help="tfmodel: PEM CA certificates client certificates are verified against",
    )
    p.add_argument(
        "--ssl_client_verify",
        default=False,
        help="tfmodel: require a client certificate signed by --ssl_custom_ca_file (mTLS)",
        **flag_bool,
    )


# --- TensorFlow runtime block ---------------------------------------------------
# main.cc / server.cc: the SessionBundleConfig and manager flags.


def _add_tensorflow_flags(p: argparse.ArgumentParser, flag_bool: dict) -> None:
    p.add_argument(
        "--tensorflow_session_parallelism",
        type=int,
        default=0,
        help="threads of each TF session (both pools) unless the intra/inter flags are set",
    )
    p.add_argument(
        "--tensorflow_session_config_file",
        default="",
        help="a tensorflow.ConfigProto text proto every SavedModel session starts from",
    )
    p.add_argument(
        "--per_process_gpu_memory_fraction",
        type=float,
        default=0.0,
        help="gpu_options.per_process_gpu_memory_fraction of every session (0 = TF's default)",
    )
    p.add_argument(
        "--xla_cpu_compilation_enabled",
        default=False,
        help="allow XLA:CPU JIT (jit_compile functions); off, as TF Serving, they fail",
        **flag_bool,
    )
    p.add_argument(
        "--xla_gpu_compilation_enabled",
        default=False,
        help="allow XLA:GPU JIT; either XLA flag leaves XLA compilation enabled",
        **flag_bool,
    )
    p.add_argument(
        "--mixed_precision",
        default="",
        help="bfloat16: oneDNN auto mixed precision rewrite in every session",
    )
    p.add_argument(
        "--remove_unused_fields_from_bundle_metagraph",
        default=True,
        help="keep only the signature_defs of each loaded MetaGraphDef",
        **flag_bool,
    )
    p.add_argument(
        "--enable_per_model_batching_parameters",
        default=False,
        help="with --enable_batching, batch a version with its own "
        "assets.extra/batching_params.pbtxt (and not at all without one)",
        **flag_bool,
    )
    p.add_argument(
        "--num_load_threads",
        type=int,
        default=0,
        help="versions loaded at once (0 = one at a time)",
    )
    p.add_argument(
        "--num_unload_threads",
        type=int,
        default=0,
        help="versions unloaded at once (0 = one at a time)",
    )
    p.add_argument(
        "--flush_filesystem_caches",
        default=True,
        help="drop the loaded model files from the page cache after each config's loads "
        "and, with one load thread, after each load (TF Serving's Env::FlushFileSystemCaches)",
        **flag_bool,
    )
    p.add_argument(
        "--prefer_tflite_model",
        default=False,
        help="load a version dir's model.tflite instead of its SavedModel when it has one",
        **flag_bool,
    )
    p.add_argument(
        "--num_tflite_pools",
        type=int,
        default=0,
        help="TFLite interpreters per model (0 = the CPUs, as TF Serving)",
    )
    p.add_argument(
        "--num_tflite_interpreters_per_pool",
        type=int,
        default=1,
        help="> 1: split requests into batches of ceil(500/N) rows across the interpreters",
    )
    p.add_argument(
        "--platform_config_file",
        default="",
        help="a PlatformConfigMap text proto whose tensorflow entry's SessionBundleConfig "
        "replaces the session flags (batching, session config, tags, warmup, TFLite), which "
        "are then ignored",
    )
    p.add_argument(
        "--thread_pool_factory_config_file",
        default="",
        help="a ThreadPoolFactoryConfig text proto: the inter-op thread pool request runs "
        "use (see docs/tflite-and-flags.md)",
    )


def schedulable_cpus() -> int:
    """port::NumSchedulableCPUs."""
    import os

    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


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
    # server.cc checks it only when the flags build the SessionBundleConfig.
    if ns.batching_parameters_file and not ns.enable_batching and not ns.platform_config_file:
        startup_failure(
            "INVALID_ARGUMENT: server_options.batching_parameters_file is set without "
            "setting server_options.enable_batching to true."
        )
    _warn_no_effect(ns)
    tls_files = (ns.ssl_server_cert_file, ns.ssl_server_key_file, ns.ssl_custom_ca_file)
    if ns.ssl_config_file and (any(tls_files) or ns.ssl_client_verify):
        parser.error(
            "--ssl_config_file and the --ssl_*_file/--ssl_client_verify flags exclude each other"
        )
    if (ns.ssl_custom_ca_file or ns.ssl_client_verify) and not ns.ssl_server_cert_file:
        parser.error("--ssl_custom_ca_file and --ssl_client_verify need --ssl_server_cert_file")
    if bool(ns.ssl_server_cert_file) != bool(ns.ssl_server_key_file):
        parser.error("--ssl_server_cert_file and --ssl_server_key_file go together")
    if ns.workers < 1:
        parser.error("--workers must be at least 1")
    if ns.max_retained_unloaded_versions < -1:
        parser.error("--max_retained_unloaded_versions must be >= 0, or -1 to keep all")
    if ns.max_request_decoded_bytes < 1:
        parser.error("--max_request_decoded_bytes must be at least 1")
    for name in (
        "request_log_max_file_bytes",
        "request_log_queue_records",
        "request_log_queue_bytes",
    ):
        if getattr(ns, name) < 1:
            parser.error(f"--{name} must be at least 1, got {getattr(ns, name)}")
    if not 0.0 <= ns.shadow_traffic_percent <= 100.0:
        parser.error(
            f"--shadow_traffic_percent must be in [0, 100], got {ns.shadow_traffic_percent}"
        )
    if ns.shadow_max_concurrent < 0:
        parser.error(f"--shadow_max_concurrent must be >= 0, got {ns.shadow_max_concurrent}")
    if ns.max_inflight_request_bytes < -1:
        parser.error("--max_inflight_request_bytes must be -1 (derive), 0 (none) or a size")
    if ns.max_inflight_requests < 0:
        parser.error(f"--max_inflight_requests must be >= 0, got {ns.max_inflight_requests}")
    if ns.rest_decode_processes < -1:
        parser.error(
            f"--rest_decode_processes must be -1 (one per core), 0 (none) or a count, "
            f"got {ns.rest_decode_processes}"
        )
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
    for name in ("num_load_threads", "num_unload_threads", "num_tflite_pools"):
        if getattr(ns, name) < 0:
            parser.error(f"--{name} must be >= 0, got {getattr(ns, name)}")
    if ns.num_tflite_interpreters_per_pool < 1:
        parser.error("--num_tflite_interpreters_per_pool must be at least 1")
    if not 0.0 <= ns.per_process_gpu_memory_fraction <= 1.0:
        parser.error("--per_process_gpu_memory_fraction must be in [0, 1]")
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
        tensorflow_session_parallelism=ns.tensorflow_session_parallelism,
        tensorflow_session_config_file=ns.tensorflow_session_config_file,
        per_process_gpu_memory_fraction=ns.per_process_gpu_memory_fraction,
        xla_cpu_compilation_enabled=ns.xla_cpu_compilation_enabled,
        xla_gpu_compilation_enabled=ns.xla_gpu_compilation_enabled,
        mixed_precision=ns.mixed_precision,
        remove_unused_fields_from_bundle_metagraph=ns.remove_unused_fields_from_bundle_metagraph,
        enable_per_model_batching_parameters=ns.enable_per_model_batching_parameters,
        num_load_threads=ns.num_load_threads,
        num_unload_threads=ns.num_unload_threads,
        flush_filesystem_caches=ns.flush_filesystem_caches,
        prefer_tflite_model=ns.prefer_tflite_model,
        num_tflite_pools=ns.num_tflite_pools or schedulable_cpus(),
        num_tflite_interpreters_per_pool=ns.num_tflite_interpreters_per_pool,
        platform_config_file=ns.platform_config_file,
        thread_pool_factory_config_file=ns.thread_pool_factory_config_file,
        workers=ns.workers,
        max_retained_unloaded_versions=ns.max_retained_unloaded_versions,
        event_loop=ns.event_loop,
        drain_timeout_seconds=ns.drain_timeout_seconds,
        traffic_split_file=ns.traffic_split_file,
        request_log_dir=ns.request_log_dir,
        request_log_max_file_bytes=ns.request_log_max_file_bytes,
        request_log_queue_records=ns.request_log_queue_records,
        request_log_queue_bytes=ns.request_log_queue_bytes,
        shadow_traffic_percent=ns.shadow_traffic_percent,
        shadow_max_concurrent=ns.shadow_max_concurrent,
        model_cache_dir=ns.model_cache_dir,
        s3_addressing_style=ns.s3_addressing_style,
        grpc_socket_path=ns.grpc_socket_path,
        ssl_config_file=ns.ssl_config_file,
        ssl_server_cert_file=ns.ssl_server_cert_file,
        ssl_server_key_file=ns.ssl_server_key_file,
        ssl_custom_ca_file=ns.ssl_custom_ca_file,
        ssl_client_verify=ns.ssl_client_verify,
        rest_api_enable_cors_support=ns.rest_api_enable_cors_support,
        enable_profiler=ns.enable_profiler,
        listen_before_models_load=ns.listen_before_models_load,
        auth_token_file=ns.auth_token_file,
        enable_reload_config_rpc=ns.enable_reload_config_rpc,
        max_request_decoded_bytes=ns.max_request_decoded_bytes,
        max_inflight_request_bytes=ns.max_inflight_request_bytes,
        max_inflight_requests=ns.max_inflight_requests,
        rest_decode_processes=ns.rest_decode_processes,
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
