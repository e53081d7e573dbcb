"""The floor for unbatched serving: the model called in-process, once per request, no network.

`concurrency` threads share one loaded signature and each makes batch-1 calls, the same call
path the naive server uses. Prints a JSON RunResult.

    python -m bench.inprocess --model_dir /models/mnist/1 --concurrency 8 --requests 4000
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model_dir", required=True)
    parser.add_argument("--signature", default="predict_images")
    parser.add_argument("--concurrency", type=int, required=True)
    parser.add_argument("--requests", type=int, required=True)
    parser.add_argument("--warmup", type=int, default=200)
    args = parser.parse_args()

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np
    import tensorflow as tf
    from tfmodel_devcluster.demo.data import load_digits_split

    from bench.results import INPROC, RunResult, percentiles_ms

    signature = tf.saved_model.load(args.model_dir).signatures[args.signature]
    input_name = next(iter(signature.structured_input_signature[1]))
    output_name = next(iter(signature.structured_outputs))
    image = load_digits_split().test_images[:1]

    def call() -> None:
        signature(**{input_name: tf.constant(image)})[output_name].numpy()

    for _ in range(args.warmup):
        call()

    per_thread = [args.requests // args.concurrency] * args.concurrency
    per_thread[0] += args.requests - sum(per_thread)
    latencies: list[list[float]] = [[] for _ in range(args.concurrency)]
    start_gate = threading.Barrier(args.concurrency + 1)

    def worker(i: int) -> None:
        out = latencies[i]
        start_gate.wait()
        for _ in range(per_thread[i]):
            t0 = time.perf_counter()
            call()
            out.append(time.perf_counter() - t0)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(args.concurrency)]
    for t in threads:
        t.start()
    start_gate.wait()
    t_start, cpu_start = time.perf_counter(), time.process_time()
    for t in threads:
        t.join()
    duration = time.perf_counter() - t_start
    cpu = time.process_time() - cpu_start
    p50, p99 = percentiles_ms(np.concatenate([np.asarray(lat) for lat in latencies]))
    result = RunResult(
        target=INPROC,
        concurrency=args.concurrency,
        requests=args.requests,
        ok=args.requests,
        duration_s=duration,
        p50_ms=p50,
        p99_ms=p99,
        server_cpu_s=cpu,
        client_cpu_s=0.0,
    )
    print(json.dumps(result.to_dict()))


if __name__ == "__main__":
    main()
