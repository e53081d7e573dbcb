"""tfmodel-server's flags, for spec.extraArgs (the operator never imports the server).

SERVER_FLAGS is generated from the server's parser (tfmodel_server.flags.build_parser) by
`python -m tests.operator.test_server_flags`; tests/operator/test_server_flags.py fails when
the two differ. Kinds: bool (bare --flag or --flag=true|false), int, float, str,
choice:a|b, switch (takes no value).
"""

from __future__ import annotations

import difflib

SERVER_FLAGS: dict[str, str] = {
    "allow_version_labels_for_unavailable_models": "bool",
    "auth_token_file": "str",
    "batching_parameters_file": "str",
    "bind_address": "str",
    "drain_timeout_seconds": "float",
    "enable_batching": "bool",
    "enable_grpc_healthcheck_service": "bool",
    "enable_model_warmup": "bool",
    "enable_per_model_batching_parameters": "bool",
    "enable_profiler": "bool",
    "enable_reload_config_rpc": "bool",
    "enable_serialization_as_tensor_content": "bool",
    "enable_signature_method_name_check": "bool",
    "event_loop": "choice:asyncio|uvloop",
    "file_system_poll_wait_seconds": "float",
    "flush_filesystem_caches": "bool",
    "grpc_channel_arguments": "str",
    "grpc_max_threads": "int",
    "grpc_socket_path": "str",
    "listen_before_models_load": "bool",
    "load_retry_interval_micros": "int",
    "max_inflight_request_bytes": "int",
    "max_inflight_requests": "int",
    "max_num_load_retries": "int",
    "max_request_decoded_bytes": "int",
    "max_retained_unloaded_versions": "int",
    "mixed_precision": "str",
    "model_base_path": "str",
    "model_cache_dir": "str",
    "model_config_file": "str",
    "model_config_file_poll_wait_seconds": "int",
    "model_name": "str",
    "monitoring_config_file": "str",
    "num_load_threads": "int",
    "num_request_iterations_for_warmup": "int",
    "num_tflite_interpreters_per_pool": "int",
    "num_tflite_pools": "int",
    "num_unload_threads": "int",
    "per_process_gpu_memory_fraction": "float",
    "platform_config_file": "str",
    "port": "int",
    "prefer_tflite_model": "bool",
    "remove_unused_fields_from_bundle_metagraph": "bool",
    "request_log_dir": "str",
    "request_log_max_file_bytes": "int",
    "request_log_queue_bytes": "int",
    "request_log_queue_records": "int",
    "rest_api_body_timeout_seconds": "float",
    "rest_api_enable_cors_support": "bool",
    "rest_api_header_timeout_seconds": "float",
    "rest_api_idle_timeout_seconds": "float",
    "rest_api_max_connections": "int",
    "rest_api_num_threads": "int",
    "rest_api_port": "int",
    "rest_api_timeout_in_ms": "int",
    "rest_decode_processes": "int",
    "s3_addressing_style": "choice:auto|path|virtual",
    "saved_model_tags": "str",
    "shadow_max_concurrent": "int",
    "shadow_traffic_percent": "float",
    "shutdown_readiness_delay_seconds": "float",
    "skip_initialize_tpu": "bool",
    "ssl_client_verify": "bool",
    "ssl_config_file": "str",
    "ssl_custom_ca_file": "str",
    "ssl_server_cert_file": "str",
    "ssl_server_key_file": "str",
    "tensorflow_inter_op_parallelism": "int",
    "tensorflow_intra_op_parallelism": "int",
    "tensorflow_session_config_file": "str",
    "tensorflow_session_parallelism": "int",
    "thread_pool_factory_config_file": "str",
    "traffic_split_file": "str",
    "use_alts_credentials": "bool",
    "version": "switch",
    "workers": "int",
    "xla_cpu_compilation_enabled": "bool",
    "xla_gpu_compilation_enabled": "bool",
}

# Flags the operator sets itself, or that a spec field models: not accepted in extraArgs.
# flag -> what sets it
OPERATOR_FLAGS: dict[str, str] = {
    "port": "the operator (spec.service.grpcPort is the Service's port)",
    "rest_api_port": "the operator (spec.service.restPort is the Service's port)",
    "bind_address": "the operator (probes and Services reach the pod IP)",
    "model_name": "spec.models",
    "model_base_path": "spec.models",
    "model_config_file": "spec.models (the operator's ConfigMap)",
    "model_config_file_poll_wait_seconds": "spec.pollIntervalSeconds",
    "file_system_poll_wait_seconds": "spec.fileSystemPollWaitSeconds",
    "allow_version_labels_for_unavailable_models": "spec.allowVersionLabelsForUnavailableModels",
    "enable_batching": "spec.batching",
    "batching_parameters_file": "spec.batching",
    "monitoring_config_file": "the operator (its rollouts read the metrics)",
    "traffic_split_file": "spec.models[].canaryTrafficPercent and rollout",
    "listen_before_models_load": "the operator (probes answer while models load)",
    "shutdown_readiness_delay_seconds": "the operator (with the pod's grace period)",
    "drain_timeout_seconds": "the operator (with the pod's grace period)",
    "grpc_channel_arguments": "the operator (connection age for rolling updates)",
    "model_cache_dir": "the operator (spec.modelCache)",
    "s3_addressing_style": "spec.objectStore.addressingStyle",
    "ssl_config_file": "spec.security.tls",
    "ssl_server_cert_file": "spec.security.tls",
    "ssl_server_key_file": "spec.security.tls",
    "ssl_custom_ca_file": "spec.security.tls",
    "ssl_client_verify": "spec.security.tls.clientVerify",
    "auth_token_file": "spec.security.tokenSecret",
    "rest_api_enable_cors_support": "spec.security.cors",
    "request_log_dir": "spec.requestLogging (a directory per pod on its volume)",
    "request_log_max_file_bytes": "spec.requestLogging.maxFileBytes",
    "version": "nobody (it prints the version and exits)",
}

_TRUE, _FALSE = ("true", "1", "yes", "t"), ("false", "0", "no", "f")


def _value_problem(flag: str, kind: str, value: str | None) -> str | None:
    if kind == "bool":
        if value is None or value.strip().lower() in _TRUE + _FALSE:
            return None
        return f"--{flag} takes true or false, not {value!r}"
    if value is None:
        return f"--{flag} needs a value: --{flag}=VALUE"
    if kind == "int":
        try:
            int(value)
        except ValueError:
            return f"--{flag} takes an integer, not {value!r}"
    elif kind == "float":
        try:
            float(value)
        except ValueError:
            return f"--{flag} takes a number, not {value!r}"
    elif kind.startswith("choice:"):
        choices = kind.removeprefix("choice:").split("|")
        if value not in choices:
            return f"--{flag} takes one of {', '.join(choices)}, not {value!r}"
    return None


def extra_arg_problems(args: list[str] | tuple[str, ...]) -> list[str]:
    """What is wrong with spec.extraArgs (empty: nothing): each item is one --flag[=value]."""
    problems: list[str] = []
    seen: set[str] = set()
    for arg in args:
        if not arg.startswith("--") or arg == "--":
            problems.append(f"extraArgs: {arg!r} is not a --flag or --flag=value")
            continue
        flag, sep, value = arg[2:].partition("=")
        kind = SERVER_FLAGS.get(flag)
        if kind is None:
            close = difflib.get_close_matches(flag, SERVER_FLAGS, n=1)
            hint = f" (did you mean --{close[0]}?)" if close else ""
            problems.append(f"extraArgs: --{flag} is not a tfmodel-server flag{hint}")
            continue
        if flag in OPERATOR_FLAGS:
            problems.append(f"extraArgs: --{flag} is set by {OPERATOR_FLAGS[flag]}")
            continue
        if flag in seen:
            problems.append(f"extraArgs: --{flag} is given twice")
        seen.add(flag)
        problem = _value_problem(flag, kind, value if sep else None)
        if problem:
            problems.append(f"extraArgs: {problem}")
    return problems
