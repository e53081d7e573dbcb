"""Predict client like TF Serving's mnist_client.py, on grpc.aio with the official stubs.

Sends one held-out digit per PredictRequest to the `predict_images` signature with at most
`concurrency` requests in flight and reports the share of wrong answers.
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass

import numpy as np

from tfmodel_devcluster.demo.data import load_digits_split

RPC_TIMEOUT_SECONDS = 5.0  # as mnist_client.py


@dataclass
class InferenceResult:
    num_tests: int
    errors: int  # wrong predictions plus failed RPCs (mnist_client.py counts both)
    failed_rpcs: int
    versions: dict[int, int]  # model version that answered -> count

    @property
    def error_rate(self) -> float:
        return self.errors / float(self.num_tests)


async def do_inference_async(
    hostport: str,
    concurrency: int,
    num_tests: int,
    model_name: str = "mnist",
    signature_name: str = "predict_images",
    progress: bool = True,
) -> InferenceResult:
    """Query the server with `num_tests` held-out digits (cycling if more are asked for)."""
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    if concurrency <= 0 or num_tests <= 0:
        raise ValueError("--concurrency and --num_tests must be positive")
    split = load_digits_split()
    images, labels = split.test_images, split.test_labels
    result = InferenceResult(num_tests=num_tests, errors=0, failed_rpcs=0, versions={})
    slots = asyncio.Semaphore(concurrency)

    async with grpc.aio.insecure_channel(hostport) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)

        async def one(i: int) -> None:
            image, label = images[i % len(images)], labels[i % len(labels)]
            request = predict_pb2.PredictRequest()
            request.model_spec.name = model_name
            request.model_spec.signature_name = signature_name
            request.inputs["images"].CopyFrom(tf.make_tensor_proto(image, shape=[1, image.size]))
            async with slots:
                try:
                    response = await stub.Predict(request, timeout=RPC_TIMEOUT_SECONDS)
                except grpc.aio.AioRpcError as exc:
                    result.errors += 1
                    result.failed_rpcs += 1
                    print(f"\nRPC failed: {exc.code().name}: {exc.details()}", file=sys.stderr)
                    return
            # tf.make_ndarray reads both tensor_content and float_val encodings.
            scores = tf.make_ndarray(response.outputs["scores"])
            if int(np.argmax(scores)) != int(label):
                result.errors += 1
            version = response.model_spec.version.value
            result.versions[version] = result.versions.get(version, 0) + 1
            if progress:
                sys.stdout.write(".")
                sys.stdout.flush()

        await asyncio.gather(*(one(i) for i in range(num_tests)))
    return result


def do_inference(
    hostport: str,
    concurrency: int,
    num_tests: int,
    model_name: str = "mnist",
    signature_name: str = "predict_images",
    progress: bool = True,
) -> InferenceResult:
    return asyncio.run(
        do_inference_async(hostport, concurrency, num_tests, model_name, signature_name, progress)
    )


def format_error_rate(error_rate: float) -> str:
    return f"Inference error rate: {error_rate * 100:g}%"
