"""The limit for a compute-bound model: its best in-process batched throughput.

For each batch size and thread count, `threads` threads call the loaded signature with
`batch`-row inputs for about `--seconds`; prints one JSON line per point (rows/s, ms per call).
The best rows/s over all points is the limit a server of this model can approach.

    python -m bench.inprocess_batched --model_dir /tmp/mlp/1 --signature predict \
        --batch_sizes 1,8,32,64 --threads 1,2
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model_dir", required=True)
    parser.add_argument("--signature", required=True)
    parser.add_argument("--batch_sizes", default="1,8,32,64")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np
    import tensorflow as tf

    signature = tf.saved_model.load(args.model_dir).signatures[args.signature]
    (input_name, spec), *_ = signature.structured_input_signature[1].items()
    output_name = next(iter(signature.structured_outputs))
    width = spec.shape[1]
    rng = np.random.default_rng(1)

    for threads in [int(t) for t in args.threads.split(",")]:
        for batch in [int(b) for b in args.batch_sizes.split(",")]:
            x = tf.constant(rng.standard_normal((batch, width)).astype(np.float32))
            for _ in range(3):
                signature(**{input_name: x})[output_name].numpy()
            calls = [0] * threads
            stop = time.perf_counter() + args.seconds
            gate = threading.Barrier(threads + 1)

            def worker(i: int, x=x, stop=stop, gate=gate, calls=calls) -> None:
                gate.wait()
                while time.perf_counter() < stop:
                    signature(**{input_name: x})[output_name].numpy()
                    calls[i] += 1

            pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
            for t in pool:
                t.start()
            gate.wait()
            t0, cpu0 = time.perf_counter(), time.process_time()
            for t in pool:
                t.join()
            duration = time.perf_counter() - t0
            n = sum(calls)
            print(
                json.dumps(
                    {
                        "batch": batch,
                        "threads": threads,
                        "calls": n,
                        "duration_s": duration,
                        "rows_per_s": n * batch / duration,
                        "ms_per_call": duration * threads / n * 1e3 if n else float("nan"),
                        "cpu_cores": (time.process_time() - cpu0) / duration,
                    }
                ),
                flush=True,
            )


if __name__ == "__main__":
    main()
