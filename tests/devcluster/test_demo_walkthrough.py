"""tfmodel-demo (make demo-server): the exported SavedModel's signatures, and the client
against a real tfmodel-server process."""

from __future__ import annotations

import numpy as np
import pytest
from tfmodel_devcluster.demo import cli
from tfmodel_devcluster.demo.data import NUM_FEATURES, load_digits_split
from tfmodel_devcluster.demo.export import export_model
from tfmodel_devcluster.demo.mnist_client import do_inference
from tfmodel_devcluster.demo.walkthrough import ServerProcess

TRAINING_ITERATIONS = 30


@pytest.fixture(scope="module")
def base_path(tmp_path_factory) -> str:
    base = tmp_path_factory.mktemp("demo") / "mnist"
    export_model(str(base), TRAINING_ITERATIONS, 1, verbose=False)
    return str(base)


@pytest.fixture(scope="module")
def loaded(base_path):
    import tensorflow as tf

    return tf.saved_model.load(f"{base_path}/1")


def _serialized_examples(images: np.ndarray) -> list[bytes]:
    import tensorflow as tf

    return [
        tf.train.Example(
            features=tf.train.Features(
                feature={"x": tf.train.Feature(float_list=tf.train.FloatList(value=image))}
            )
        ).SerializeToString()
        for image in images
    ]


def test_export_writes_both_signatures_with_tutorial_dtypes_and_shapes(base_path):
    from tensorflow.core.protobuf import saved_model_pb2

    saved = saved_model_pb2.SavedModel()
    with open(f"{base_path}/1/saved_model.pb", "rb") as f:
        saved.ParseFromString(f.read())
    sigs = saved.meta_graphs[0].signature_def
    assert set(sigs) == {"predict_images", "serving_default"}
    assert list(saved.meta_graphs[0].meta_info_def.tags) == ["serve"]

    def shape(info):
        return [d.size for d in info.tensor_shape.dim]

    predict = sigs["predict_images"]
    assert predict.method_name == "tensorflow/serving/predict"
    assert set(predict.inputs) == {"images"} and set(predict.outputs) == {"scores"}
    assert predict.inputs["images"].dtype == 1  # DT_FLOAT
    assert shape(predict.inputs["images"]) == [-1, NUM_FEATURES]
    assert predict.outputs["scores"].dtype == 1
    assert shape(predict.outputs["scores"]) == [-1, 10]

    classify = sigs["serving_default"]
    assert classify.method_name == "tensorflow/serving/classify"
    assert set(classify.inputs) == {"inputs"}
    assert classify.inputs["inputs"].dtype == 7  # DT_STRING
    assert set(classify.outputs) == {"classes", "scores"}
    assert classify.outputs["classes"].dtype == 7
    assert shape(classify.outputs["classes"]) == [-1, 10]
    assert classify.outputs["scores"].dtype == 1
    assert shape(classify.outputs["scores"]) == [-1, 10]


def test_exported_signatures_run_and_agree(loaded):
    import tensorflow as tf

    images = load_digits_split().test_images[:5]
    scores = loaded.signatures["predict_images"](images=tf.constant(images))["scores"].numpy()
    assert scores.shape == (5, 10)
    np.testing.assert_allclose(scores.sum(axis=1), np.ones(5), rtol=1e-5)

    out = loaded.signatures["serving_default"](inputs=tf.constant(_serialized_examples(images)))
    classes, top_scores = out["classes"].numpy(), out["scores"].numpy()
    assert classes.shape == (5, 10) and top_scores.shape == (5, 10)
    # The classify signature is the same model, its classes ordered by score.
    np.testing.assert_array_equal(classes[:, 0].astype(int), scores.argmax(axis=1))
    np.testing.assert_allclose(top_scores, -np.sort(-scores, axis=1), rtol=1e-5)


def test_export_refuses_to_overwrite_a_version(base_path):
    with pytest.raises(FileExistsError, match="already exists"):
        export_model(base_path, 1, 1, verbose=False)


def test_export_cli_rejects_non_positive_iterations(tmp_path, capsys):
    assert cli.main(["export", "--training_iteration=0", str(tmp_path / "m")]) == 1
    assert "positive value for training iteration" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


def test_client_cli_requires_server(capsys):
    assert cli.main(["client", "--num_tests=5"]) == 2
    assert "please specify server host:port" in capsys.readouterr().err


@pytest.fixture(scope="module")
def server(base_path, tmp_path_factory):
    log = tmp_path_factory.mktemp("demo-server") / "server.log"
    proc = ServerProcess("mnist", base_path, str(log))
    try:
        proc.wait_ready(timeout=60)
        yield proc
    finally:
        code = proc.stop()
        assert code == 0, f"server exit code {code} after SIGTERM:\n{proc.log_tail()}"


def test_client_error_rate_matches_the_model_run_in_process(server, loaded):
    import tensorflow as tf

    num_tests = 60
    result = do_inference(server.grpc_target, 6, num_tests, "mnist", progress=False)
    assert result.failed_rpcs == 0
    assert result.versions == {1: num_tests}

    split = load_digits_split()
    scores = loaded.signatures["predict_images"](images=tf.constant(split.test_images[:num_tests]))
    expected = np.mean(scores["scores"].numpy().argmax(axis=1) != split.test_labels[:num_tests])
    assert result.error_rate == pytest.approx(expected)


def test_client_cli_prints_error_rate(server, capsys):
    code = cli.main(
        ["client", f"--server={server.grpc_target}", "--num_tests=20", "--concurrency=4"]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "Inference error rate: " in out and out.rstrip().endswith("%")


def test_client_reports_failed_rpcs_for_an_unknown_model(server, capsys):
    result = do_inference(server.grpc_target, 2, 4, "no-such-model", progress=False)
    assert result.failed_rpcs == 4 and result.error_rate == 1.0
    assert "NOT_FOUND" in capsys.readouterr().err


def test_mnist_client_request_and_response_code_unchanged(server, loaded):
    """TF Serving's example/mnist_client.py, its request and callback code as written
    there, against default flags: it reads outputs['scores'].float_val."""
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    split = load_digits_split()
    channel = grpc.insecure_channel(server.grpc_target)
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    predictions = []
    for image in split.test_images[:10]:
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "mnist"
        request.model_spec.signature_name = "predict_images"
        request.inputs["images"].CopyFrom(tf.make_tensor_proto(image, shape=[1, image.size]))
        result_future = stub.Predict.future(request, 5.0)  # 5 seconds
        response = np.array(result_future.result().outputs["scores"].float_val)
        predictions.append(int(np.argmax(response)))
    channel.close()
    scores = loaded.signatures["predict_images"](images=tf.constant(split.test_images[:10]))
    assert predictions == scores["scores"].numpy().argmax(axis=1).tolist()
