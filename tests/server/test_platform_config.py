"""--platform_config_file: TF Serving's PlatformConfigMap replaces the session flags.

The files are TF Serving's text format: the "tensorflow" platform's Any holds a
SavedModelBundleSourceAdapterConfig whose legacy_config is the SessionBundleConfig
(parsed with the messages generated from TF Serving's .proto files). Checked on real
server processes where the effect is observable (batching limits, tags, load pools,
session config) and in process for the error messages.
"""

from __future__ import annotations

from pathlib import Path

import grpc
import numpy as np
import pytest
from tensorflow.core.protobuf import config_pb2, rewriter_config_pb2
from tfmodel_server.flags import parse_args
from tfmodel_server.model_servers.platform_config import (
    PlatformConfigError,
    apply_platform_config_file,
    read_session_bundle_config,
)
from tfmodel_server.servables.tensorflow.loader import load_saved_model

from tests.ports import free_port
from tests.server.savedmodels import export_linear
from tests.server.serverproc import ServerProcess
from tests.server.test_grpc_api import predict_request, y_of
from tests.server.test_server_process import run_cli

ADAPTER = "type.googleapis.com/tensorflow.serving.SavedModelBundleSourceAdapterConfig"


def platform_config(legacy_config: str, platform: str = "tensorflow") -> str:
    return f"""
platform_configs {{
  key: "{platform}"
  value {{
    source_adapter_config {{
      [{ADAPTER}] {{
        legacy_config {{
{legacy_config}
        }}
      }}
    }}
  }}
}}
"""


def _write(tmp_path: Path, text: str, name: str = "platform.pbtxt") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


@pytest.fixture
def model(tmp_path: Path) -> Path:
    base = tmp_path / "m"
    export_linear(base, 1, a=2.0, b=1.0)
    return base


def test_the_session_bundle_config_replaces_the_flags(tmp_path):
    path = _write(
        tmp_path,
        platform_config(
            """
          session_config { intra_op_parallelism_threads: 3 }
          batching_parameters { max_batch_size { value: 4 } allowed_batch_sizes: [2, 4] }
          enable_per_model_batching_params: true
          saved_model_tags: ["serve", "extra"]
          enable_model_warmup: true
          model_warmup_options { num_request_iterations { value: 5 } }
          remove_unused_fields_from_bundle_metagraph: true
          prefer_tflite_model: true
          num_tflite_interpreters_per_pool: 2
          num_tflite_pools: 3
          mixed_precision: "bfloat16"
          session_run_load_threadpool_index { value: 0 }
          enable_session_metadata: true
          experimental_transient_ram_bytes_during_load: 1000000
          resource_estimation_uses_validation_result: true
          experimental_fixed_input_tensors { name: "k" }
"""
        ),
    )
    # Flags it replaces are ignored, as in TF Serving (server.cc's other branch).
    options = apply_platform_config_file(
        parse_args(
            [
                f"--model_base_path={tmp_path}",
                f"--platform_config_file={path}",
                "--tensorflow_intra_op_parallelism=7",
                "--enable_model_warmup=false",
                "--saved_model_tags=other",
            ]
        )
    )
    config = config_pb2.ConfigProto.FromString(options.session_config_proto)
    assert config.intra_op_parallelism_threads == 3
    assert (
        config.graph_options.rewrite_options.auto_mixed_precision_onednn_bfloat16
        == rewriter_config_pb2.RewriterConfig.ON
    )
    assert options.enable_batching and "max_batch_size" in options.batching_parameters_text
    assert options.enable_per_model_batching_parameters
    assert options.saved_model_tags == ("serve", "extra")
    assert options.enable_model_warmup and options.num_request_iterations_for_warmup == 5
    assert options.remove_unused_fields_from_bundle_metagraph
    assert options.prefer_tflite_model
    assert (options.num_tflite_pools, options.num_tflite_interpreters_per_pool) == (3, 2)
    assert options.session_run_load_threadpool_index == 0
    assert options.enable_session_metadata


def test_proto_defaults_apply_not_the_flag_defaults(tmp_path):
    """An empty SessionBundleConfig: no batching, no warmup, the serve tag (server.cc
    fills these from the flags only without the file)."""
    path = _write(tmp_path, platform_config(""))
    options = apply_platform_config_file(
        parse_args([f"--model_base_path={tmp_path}", f"--platform_config_file={path}"])
    )
    assert not options.enable_batching
    assert not options.enable_model_warmup  # the flag's default is true
    assert options.saved_model_tags == ("serve",)
    assert options.session_run_load_threadpool_index is None
    assert config_pb2.ConfigProto.FromString(options.session_config_proto) == (
        config_pb2.ConfigProto()
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("platform_configs { key: ", "Invalid protobuf file: '{path}': Error parsing text-format"),
        (
            'platform_configs { key: "tensorflow" value { source_adapter_config { } } }',
            "INVALID_ARGUMENT: Supplied config's type_url could not be parsed: ",
        ),
        (
            'platform_configs { key: "tensorflow" value { source_adapter_config { '
            "[type.googleapis.com/tensorflow.ConfigProto] { } } } }",
            "INVALID_ARGUMENT: Couldn't find factory for config proto message type "
            "tensorflow.ConfigProto",
        ),
        (
            'platform_configs { key: "tensorflow" value { source_adapter_config { '
            'type_url: "type.googleapis.com/acme.Adapter" value: "" } } }',
            "INTERNAL: Unable to find compiled-in proto descriptor of type acme.Adapter",
        ),
        (
            'platform_configs { key: "tensorflow" value { source_adapter_config { '
            f'type_url: "{ADAPTER}" value: "\\377\\377" }} }} }}',
            "INVALID_ARGUMENT: Malformed content of Any",
        ),
        ("", "FAILED_PRECONDITION: PlatformConfigMap has no entry for platform tensorflow"),
        (platform_config("", "tf_other"), "platform tf_other: only the tensorflow platform"),
        (
            platform_config('session_target: "grpc://elsewhere:2222"'),
            "SessionBundleConfig field(s) not supported by tfmodel-server: session_target",
        ),
        (
            platform_config(
                "wrap_session_with_no_threading_params: true\n"
                "model_warmup_options { num_model_warmup_threads { value: 4 } }"
            ),
            "wrap_session_with_no_threading_params, model_warmup_options.num_model_warmup_threads",
        ),
    ],
)
def test_files_tf_serving_would_refuse_are_refused(tmp_path, text, message):
    path = _write(tmp_path, text)
    with pytest.raises(PlatformConfigError) as raised:
        read_session_bundle_config(path)
    assert message.format(path=path) in str(raised.value)


def test_a_bad_file_stops_start_up_with_tf_servings_message(tmp_path, model):
    path = _write(tmp_path, platform_config("no_such_field: 1"))
    result = run_cli(
        f"--model_base_path={model}",
        f"--platform_config_file={path}",
        f"--port={free_port()}",
        f"--rest_api_port={free_port()}",
    )
    assert result.returncode == 255
    assert f"Failed to start server. Error: INVALID_ARGUMENT: Invalid protobuf file: '{path}'" in (
        result.stdout
    )
    assert "no_such_field" in result.stdout
    missing = run_cli(
        f"--model_base_path={model}",
        f"--platform_config_file={tmp_path / 'missing.pbtxt'}",
        f"--port={free_port()}",
        f"--rest_api_port={free_port()}",
    )
    assert missing.returncode == 255
    assert "Failed to start server. Error: NOT_FOUND: Cannot read platform config file" in (
        missing.stdout
    )


def test_a_served_model_batches_with_the_files_parameters(tmp_path, model):
    """batching_parameters present = batching on, with its max_batch_size; the flags
    (here --enable_batching=false) are ignored."""
    path = _write(
        tmp_path,
        platform_config(
            """
          session_config { intra_op_parallelism_threads: 2 }
          batching_parameters { max_batch_size { value: 4 } batch_timeout_micros { value: 0 } }
"""
        ),
    )
    with ServerProcess(
        f"--model_base_path={model}",
        "--model_name=m",
        f"--platform_config_file={path}",
        "--enable_batching=false",
        "--tensorflow_session_parallelism=5",
    ) as server:
        server.wait_ready()
        stub = server.prediction_stub()
        assert list(y_of(stub.Predict(predict_request("m", [1.0, 2.0]), timeout=30))) == [3.0, 5.0]
        with pytest.raises(grpc.RpcError) as raised:
            stub.Predict(predict_request("m", [1.0] * 5), timeout=30)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "larger than maximum input batch size 4" in raised.value.details()
        log = server.log()
    assert "TensorFlow session config: {intra_op_parallelism_threads: 2}" in log
    assert "ignoring --tensorflow_session_parallelism" in log


def test_saved_model_tags_come_from_the_file(tmp_path, model):
    path = _write(tmp_path, platform_config('saved_model_tags: "training"'))
    result = run_cli(
        f"--model_base_path={model}",
        f"--platform_config_file={path}",
        "--max_num_load_retries=0",
        f"--port={free_port()}",
        f"--rest_api_port={free_port()}",
        timeout=180,
    )
    assert result.returncode == 255
    assert "Could not find meta graph def matching supplied tags: { training }" in result.stderr


def test_load_runs_use_session_run_load_threadpool_index(tmp_path, model):
    """GetRunOptions: restore and init ops run on that session_inter_op_thread_pool;
    an index with no pool fails the load with TensorFlow's own error."""
    pools = "session_config { session_inter_op_thread_pool { num_threads: 1 } }"
    good = _write(
        tmp_path, platform_config(pools + " session_run_load_threadpool_index { value: 0 }")
    )
    with ServerProcess(
        f"--model_base_path={model}", "--model_name=m", f"--platform_config_file={good}"
    ) as server:
        server.wait_ready()
        response = server.prediction_stub().Predict(predict_request("m", [2.0]), timeout=30)
        assert list(y_of(response)) == [5.0]
    bad = _write(
        tmp_path,
        platform_config(pools + " session_run_load_threadpool_index { value: 3 }"),
        "bad.pbtxt",
    )
    result = run_cli(
        f"--model_base_path={model}",
        f"--platform_config_file={bad}",
        "--max_num_load_retries=0",
        f"--port={free_port()}",
        f"--rest_api_port={free_port()}",
        timeout=180,
    )
    assert result.returncode == 255
    assert "Invalid inter_op_thread_pool: 3" in result.stderr  # the failed load's log


def test_session_metadata_names_the_model_and_version(tmp_path, model):
    servable = load_saved_model("m", 1, str(model / "1"), session_metadata=True)
    try:
        metadata = servable._session._config.experimental.session_metadata
        assert (metadata.name, metadata.version) == ("m", 1)
        out = servable.signature("").run({"x": np.array([1.0], np.float32)})
        assert list(out["y"]) == [3.0]
    finally:
        servable.unload()
