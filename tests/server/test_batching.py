"""BatchingRunner against real SavedModels loaded by the real loader."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import numpy as np
import pytest
from tfmodel_server.errors import ServingError
from tfmodel_server.inference.batching import BatchingRunner
from tfmodel_server.inference.batching_params import (
    BatchingConfigError,
    BatchingParametersProto,
    BatchingParams,
    default_num_batch_threads,
    load_batching_parameters,
)
from tfmodel_server.monitoring.metrics import ServingMetrics
from tfmodel_server.servables.tensorflow.loader import load_saved_model

from tests.server.savedmodels import export_linear, export_multi_input


def _export_shapes_model(path: Path) -> None:
    """serving_default: x f32[-1] -> y = check_numerics(x)*2+1 (NaN fails the call);
    total: x f32[-1] -> sum f32[1] (no batch dim: must not be split);
    matrix: m f32[-1,-1] -> doubled = m*2 (variable inner length)."""
    import tensorflow as tf

    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float32, shape=[None], name="x")
        y = tf.add(tf.debugging.check_numerics(x, "x has NaN") * 2.0, 1.0, name="y")
        total = tf.reduce_sum(x, keepdims=True, name="total")
        m = v1.placeholder(tf.float32, shape=[None, None], name="m")
        doubled = tf.multiply(m, 2.0, name="doubled")
        info = v1.saved_model.utils.build_tensor_info
        build = v1.saved_model.signature_def_utils.build_signature_def
        method = "tensorflow/serving/predict"
        sigs = {
            "serving_default": build({"x": info(x)}, {"y": info(y)}, method),
            "total": build({"x": info(x)}, {"sum": info(total)}, method),
            "matrix": build({"m": info(m)}, {"doubled": info(doubled)}, method),
        }
        with v1.Session(graph=graph) as session:
            builder = v1.saved_model.Builder(str(path))
            builder.add_meta_graph_and_variables(
                session, ["serve"], signature_def_map=sigs, strip_default_attrs=True
            )
            builder.save()


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("batching")
    multi = load_saved_model("multi", 1, str(export_multi_input(root / "multi", 1)))
    linear = load_saved_model("linear", 1, str(export_linear(root / "linear", 1, a=3.0, b=-1.0)))
    shapes_dir = root / "shapes" / "1"
    _export_shapes_model(shapes_dir)
    shapes = load_saved_model("shapes", 1, str(shapes_dir))
    yield {"multi": multi, "linear": linear, "shapes": shapes}
    for servable in (multi, linear, shapes):
        servable.unload()


class Recorder(ServingMetrics):
    """Real ServingMetrics that also keeps the batch sizes it saw, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.sizes: list[tuple[int, int]] = []

    def record_batch(self, model_name, version, signature_key, batch_size, padded_size, *a, **kw):
        self.sizes.append((batch_size, padded_size))
        super().record_batch(model_name, version, signature_key, batch_size, padded_size, *a, **kw)


def _params(**kw) -> BatchingParams:
    kw.setdefault("num_batch_threads", 2)
    return BatchingParams(**kw)


def _multi_request(i: int) -> dict[str, np.ndarray]:
    rows = 1 + i % 4
    return {
        "a": np.arange(rows * 2, dtype=np.float32).reshape(rows, 2) + i,
        "b": np.arange(rows, dtype=np.int64) * (i + 1),
        "s": np.array([f"r{i}-{j}".encode() for j in range(rows)], dtype=object),
    }


async def test_results_identical_to_unbatched_and_split_per_request(models):
    servable = models["multi"]
    signature = servable.signature("")
    stats = Recorder()
    runner = BatchingRunner(_params(max_batch_size=32, batch_timeout_micros=20_000), stats)
    requests = [_multi_request(i) for i in range(24)]
    try:
        results = await asyncio.gather(*(runner.run(servable, signature, r) for r in requests))
    finally:
        await runner.drain()
    for request, result in zip(requests, results, strict=True):
        expected = signature.run(request)
        assert set(result) == {"sum", "s_out", "s_bytes"}
        for alias, value in expected.items():
            assert result[alias].shape == value.shape
            np.testing.assert_array_equal(result[alias], value)
        assert result["sum"].shape[0] == request["b"].shape[0]
    # Requests were really merged: fewer TF calls than requests, all rows accounted.
    assert len(stats.sizes) < len(requests)
    assert sum(size for size, _ in stats.sizes) == sum(r["b"].shape[0] for r in requests)
    assert max(size for size, _ in stats.sizes) > 1
    # Idle queues are dropped: nothing keeps the servable alive after its requests.
    assert runner.num_queues == 0


async def test_output_filter_requests_share_a_queue_only_with_the_same_filter(models):
    servable = models["multi"]
    signature = servable.signature("")
    stats = Recorder()
    runner = BatchingRunner(_params(max_batch_size=16, batch_timeout_micros=20_000), stats)
    try:
        only_sum, everything = await asyncio.gather(
            runner.run(servable, signature, _multi_request(1), ["sum"]),
            runner.run(servable, signature, _multi_request(2)),
        )
    finally:
        await runner.drain()
    assert set(only_sum) == {"sum"}
    assert set(everything) == {"sum", "s_out", "s_bytes"}
    assert len(stats.sizes) == 2


async def test_padding_to_allowed_batch_sizes_drops_padded_rows(models):
    servable = models["linear"]
    signature = servable.signature("")
    stats = Recorder()
    params = _params(max_batch_size=8, batch_timeout_micros=20_000, allowed_batch_sizes=(4, 8))
    runner = BatchingRunner(params, stats)
    xs = [np.array([1.0], np.float32), np.array([2.0, 3.0], np.float32)]
    try:
        results = await asyncio.gather(*(runner.run(servable, signature, {"x": x}) for x in xs))
    finally:
        await runner.drain()
    assert stats.sizes == [(3, 4)]
    for x, result in zip(xs, results, strict=True):
        np.testing.assert_allclose(result["y"], 3.0 * x - 1.0)
    assert stats.padded_batch_size.count("linear", "1", "serving_default") == 1


async def test_request_larger_than_max_batch_size_is_invalid_argument(models):
    servable = models["linear"]
    runner = BatchingRunner(_params(max_batch_size=4))
    try:
        with pytest.raises(ServingError) as info:
            await runner.run(servable, servable.signature(""), {"x": np.zeros(5, np.float32)})
    finally:
        await runner.drain()
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.message == "Task size 5 is larger than maximum input batch size 4"


async def test_full_queue_rejects_with_unavailable_at_once(models):
    servable = models["linear"]
    signature = servable.signature("")
    params = _params(max_batch_size=1, max_enqueued_batches=2, num_batch_threads=1)
    runner = BatchingRunner(params)
    xs = [np.array([float(i)], np.float32) for i in range(6)]
    try:
        # All six arrive in one loop iteration, before any batch can start.
        results = await asyncio.gather(
            *(runner.run(servable, signature, {"x": x}) for x in xs), return_exceptions=True
        )
    finally:
        await runner.drain()
    ok = [r for r in results if not isinstance(r, Exception)]
    rejected = [r for r in results if isinstance(r, Exception)]
    assert len(ok) == 2 and len(rejected) == 4
    for error in rejected:
        assert isinstance(error, ServingError)
        assert error.code == grpc.StatusCode.UNAVAILABLE
        assert "queue to which this task was submitted is full" in error.message
        assert error.http_status == 503
    np.testing.assert_allclose(ok[0]["y"], [-1.0])
    np.testing.assert_allclose(ok[1]["y"], [2.0])
    # The queue recovers once batches drain.
    runner2 = BatchingRunner(params)
    try:
        again = await runner2.run(servable, signature, {"x": xs[5]})
    finally:
        await runner2.drain()
    np.testing.assert_allclose(again["y"], [14.0])


async def test_mixed_inner_shapes_are_not_merged(models):
    servable = models["shapes"]
    signature = servable.signature("matrix")
    stats = Recorder()
    runner = BatchingRunner(_params(max_batch_size=8, batch_timeout_micros=20_000), stats)
    a = np.ones((1, 3), np.float32)
    b = np.full((2, 4), 5.0, np.float32)
    c = np.full((1, 3), 7.0, np.float32)
    try:
        ra, rb, rc = await asyncio.gather(
            *(runner.run(servable, signature, {"m": m}) for m in (a, b, c))
        )
    finally:
        await runner.drain()
    np.testing.assert_array_equal(ra["doubled"], a * 2)
    np.testing.assert_array_equal(rb["doubled"], b * 2)
    np.testing.assert_array_equal(rc["doubled"], c * 2)
    # (1,3) and (1,3) share a batch; (2,4) runs on its own.
    assert sorted(stats.sizes) == [(2, 2), (2, 2)]
    assert len(stats.sizes) == 2


async def test_mixed_dtypes_are_not_merged(models):
    servable = models["shapes"]
    signature = servable.signature("matrix")
    stats = Recorder()
    runner = BatchingRunner(_params(max_batch_size=8, batch_timeout_micros=20_000), stats)
    f32 = np.ones((1, 2), np.float32)
    f64 = np.ones((1, 2), np.float64)  # TF refuses float64 for a float feed
    try:
        ok, bad = await asyncio.gather(
            runner.run(servable, signature, {"m": f32}),
            runner.run(servable, signature, {"m": f64}),
            return_exceptions=True,
        )
    finally:
        await runner.drain()
    # The float32 request is unaffected by the float64 one next to it.
    np.testing.assert_array_equal(ok["doubled"], f32 * 2)
    assert (1, 1) in stats.sizes and (2, 2) not in stats.sizes
    assert bad is not None


async def test_pad_variable_length_inputs_merges_and_pads_inner_dims(models):
    servable = models["shapes"]
    signature = servable.signature("matrix")
    stats = Recorder()
    params = _params(max_batch_size=8, batch_timeout_micros=20_000, pad_variable_length_inputs=True)
    runner = BatchingRunner(params, stats)
    a = np.array([[1.0, 2.0]], np.float32)
    b = np.array([[3.0, 4.0, 5.0]], np.float32)
    try:
        ra, rb = await asyncio.gather(
            runner.run(servable, signature, {"m": a}), runner.run(servable, signature, {"m": b})
        )
    finally:
        await runner.drain()
    assert stats.sizes == [(2, 2)]
    # batching_util.cc pads at the end with the tensor's first element.
    np.testing.assert_array_equal(ra["doubled"], [[2.0, 4.0, 2.0]])
    np.testing.assert_array_equal(rb["doubled"], [[6.0, 8.0, 10.0]])


async def test_output_without_batch_dim_fails_that_batch_only(models):
    servable = models["shapes"]
    stats = Recorder()
    runner = BatchingRunner(_params(max_batch_size=8, batch_timeout_micros=20_000), stats)
    total = servable.signature("total")
    good = servable.signature("")
    x = np.array([1.0, 2.0], np.float32)
    try:
        results = await asyncio.gather(
            runner.run(servable, total, {"x": x}),
            runner.run(servable, total, {"x": x}),
            runner.run(servable, good, {"x": x}),
            return_exceptions=True,
        )
    finally:
        await runner.drain()
    for error in results[:2]:
        assert isinstance(error, ServingError)
        assert error.code == grpc.StatusCode.FAILED_PRECONDITION
        assert "0th dimension does not equal" in error.message
    np.testing.assert_allclose(results[2]["y"], [3.0, 5.0])


async def test_tf_error_fails_only_its_batch_and_runner_keeps_working(models):
    servable = models["shapes"]
    signature = servable.signature("")
    runner = BatchingRunner(_params(max_batch_size=8, batch_timeout_micros=20_000))
    bad = np.array([1.0, np.nan], np.float32)
    fine = np.array([4.0], np.float32)
    try:
        first = await asyncio.gather(
            runner.run(servable, signature, {"x": bad}),
            runner.run(servable, signature, {"x": fine}),
            return_exceptions=True,
        )
        # Same batch as the NaN request: TF Serving fails every request of it.
        for error in first:
            assert isinstance(error, ServingError)
            assert error.code == grpc.StatusCode.INVALID_ARGUMENT
            assert "x has NaN" in error.message
        later = await runner.run(servable, signature, {"x": fine})
    finally:
        await runner.drain()
    np.testing.assert_allclose(later["y"], [9.0])


async def test_timeout_window_merges_requests_arriving_in_separate_iterations(models):
    servable = models["linear"]
    signature = servable.signature("")
    stats = Recorder()
    runner = BatchingRunner(_params(max_batch_size=64, batch_timeout_micros=300_000), stats)

    async def later(i: int):
        await asyncio.sleep(0.01 * i)
        return await runner.run(servable, signature, {"x": np.array([float(i)], np.float32)})

    try:
        results = await asyncio.gather(*(later(i) for i in range(5)))
    finally:
        await runner.drain()
    assert stats.sizes == [(5, 5)]
    for i, result in enumerate(results):
        np.testing.assert_allclose(result["y"], [3.0 * i - 1.0])
    assert stats.batch_queueing_latency.count("linear", "1", "serving_default") == 5


async def test_full_batch_runs_without_waiting_for_the_timeout(models):
    servable = models["linear"]
    signature = servable.signature("")
    runner = BatchingRunner(_params(max_batch_size=2, batch_timeout_micros=30_000_000))
    x = np.array([1.0, 2.0], np.float32)
    try:
        result = await asyncio.wait_for(runner.run(servable, signature, {"x": x}), timeout=10)
    finally:
        await runner.drain()
    np.testing.assert_allclose(result["y"], [2.0, 5.0])


async def test_drain_answers_waiting_requests_then_refuses_new_ones(models):
    servable = models["linear"]
    signature = servable.signature("")
    runner = BatchingRunner(_params(max_batch_size=64, batch_timeout_micros=30_000_000))
    pending = [
        asyncio.ensure_future(
            runner.run(servable, signature, {"x": np.array([float(i)], np.float32)})
        )
        for i in range(3)
    ]
    await asyncio.sleep(0.05)
    assert runner.queue_depth() == 3
    await asyncio.wait_for(runner.drain(), timeout=10)
    results = [p.result() for p in pending]
    assert [float(r["y"][0]) for r in results] == [-1.0, 2.0, 5.0]
    with pytest.raises(ServingError) as info:
        await runner.run(servable, signature, {"x": np.array([1.0], np.float32)})
    assert info.value.code == grpc.StatusCode.UNAVAILABLE


async def test_unbatchable_requests_run_directly(models):
    servable = models["multi"]
    signature = servable.signature("")
    runner = BatchingRunner(_params(max_batch_size=4))
    empty = {
        "a": np.zeros((0, 2), np.float32),
        "b": np.zeros((0,), np.int64),
        "s": np.array([], dtype=object),
    }
    try:
        result = await runner.run(servable, signature, empty)
    finally:
        await runner.drain()
    assert result["sum"].shape == (0,)


async def test_sync_close_runs_queued_batches(models):
    servable = models["linear"]
    signature = servable.signature("")
    runner = BatchingRunner(_params(max_batch_size=64, batch_timeout_micros=30_000_000))
    pending = asyncio.ensure_future(
        runner.run(servable, signature, {"x": np.array([2.0], np.float32)})
    )
    await asyncio.sleep(0.02)
    runner.close()
    result = await asyncio.wait_for(pending, timeout=10)
    np.testing.assert_allclose(result["y"], [5.0])


# ---- --batching_parameters_file ---------------------------------------------


def test_parameters_file_with_wrapper_fields(tmp_path):
    path = tmp_path / "batching.txt"
    path.write_text(
        "max_batch_size { value: 64 }\n"
        "batch_timeout_micros { value: 2000 }\n"
        "max_enqueued_batches { value: 100 }\n"
        "num_batch_threads { value: 3 }\n"
        "thread_pool_name { value: 'pool' }\n"
        "allowed_batch_sizes: 8\nallowed_batch_sizes: 32\nallowed_batch_sizes: 64\n"
        "pad_variable_length_inputs: true\n"
    )
    params = load_batching_parameters(path)
    assert params == BatchingParams(
        max_batch_size=64,
        batch_timeout_micros=2000,
        max_enqueued_batches=100,
        num_batch_threads=3,
        thread_pool_name="pool",
        allowed_batch_sizes=(8, 32, 64),
        pad_variable_length_inputs=True,
    )
    assert params.threads == 3
    assert [params.padded_size(n) for n in (1, 8, 9, 33, 64)] == [8, 8, 32, 64, 64]


def test_defaults_are_tf_servings(tmp_path):
    path = tmp_path / "empty.txt"
    path.write_text("")
    params = load_batching_parameters(path)
    assert (params.max_batch_size, params.batch_timeout_micros, params.max_enqueued_batches) == (
        1000,
        0,
        10,
    )
    assert params.allowed_batch_sizes == () and not params.pad_variable_length_inputs
    assert params.threads == default_num_batch_threads() >= 1
    assert load_batching_parameters("") == BatchingParams()
    assert BatchingParametersProto.DESCRIPTOR.full_name == "tensorflow.serving.BatchingParameters"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            "max_batch_size { value: 16 } allowed_batch_sizes: 4 allowed_batch_sizes: 8",
            "Last entry in allowed_batch_sizes must match max_batch_size; last entry was 8; "
            "expected 16",
        ),
        ("allowed_batch_sizes: 1000", None),
        ("allowed_batch_sizes: 100", "expected 1000"),
        (
            "max_batch_size { value: 8 } allowed_batch_sizes: 4 allowed_batch_sizes: 4 "
            "allowed_batch_sizes: 8",
            "strictly increasing",
        ),
        ("max_batch_size { value: 0 }", "max_batch_size must be positive"),
        ("max_enqueued_batches { value: 0 }", "max_enqueued_batches must be positive"),
        ("num_batch_threads { value: 0 }", "num_batch_threads must be positive"),
        ("batch_timeout_micros { value: -1 }", "batch_timeout_micros must be non-negative"),
        ("max_batch_size: 64", "max_batch_size"),  # not a wrapper: parse error
        ("max_batch_sizes { value: 1 }", 'no field named "max_batch_sizes"'),
    ],
)
def test_invalid_parameters_name_file_and_problem(tmp_path, text, problem):
    path = tmp_path / "batching.txt"
    path.write_text(text)
    if problem is None:
        assert load_batching_parameters(path).allowed_batch_sizes == (1000,)
        return
    with pytest.raises(BatchingConfigError) as info:
        load_batching_parameters(path)
    assert str(path) in str(info.value)
    assert problem in str(info.value)


def test_missing_parameters_file_is_named(tmp_path):
    with pytest.raises(BatchingConfigError, match="nope.txt"):
        load_batching_parameters(tmp_path / "nope.txt")
