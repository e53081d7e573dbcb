"""Cost of one batch-1 call through each TensorFlow call path, for the demo model.

    .venv/bin/python -m bench.callpaths [--calls 3000]

Single thread, no serving around it: the per-call floor each path puts under a server.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=3000)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np
    import tensorflow as tf
    from tensorflow.core.protobuf import config_pb2
    from tfmodel_devcluster.demo.export import export_model

    base = tempfile.mkdtemp(prefix="tfmodel-callpaths-")
    model_dir = export_model(base, 10, 1, verbose=False)
    x = np.random.default_rng(0).random((1, 64), dtype=np.float32)

    loaded = tf.saved_model.load(model_dir)
    signature = loaded.signatures["predict_images"]

    tf1 = tf.compat.v1
    graph = tf.Graph()
    session = tf1.Session(graph=graph)
    with graph.as_default():
        tf1.saved_model.loader.load(session, ["serve"], model_dir)
    generic = session.make_callable("y:0", ["x:0"])
    options = config_pb2.CallableOptions(feed=["x:0"], fetch=["y:0"])
    from_options = session._make_callable_from_options(options)

    paths = {
        "tf.saved_model.load(...).signatures[key](images=tf.constant(x))": lambda: signature(
            images=tf.constant(x)
        )["scores"].numpy(),
        "tf.compat.v1 Session.run(fetch, feed_dict)": lambda: session.run("y:0", {"x:0": x}),
        "Session.make_callable(fetch, feed_list) (falls back to Session.run)": lambda: generic(x),
        "Session._make_callable_from_options(CallableOptions)": lambda: from_options(x)[0],
    }
    reference = generic(x)
    for name, call in paths.items():
        np.testing.assert_allclose(
            np.asarray(call()).reshape(reference.shape), reference, rtol=1e-5
        )
        for _ in range(300):
            call()
        t0 = time.perf_counter()
        for _ in range(args.calls):
            call()
        print(f"{(time.perf_counter() - t0) / args.calls * 1e6:7.0f} us/call  {name}")


if __name__ == "__main__":
    main()
