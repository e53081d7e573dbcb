"""Peak RSS of decoding one large valid REST predict body, as a multiple of the body size.

Two measurements (issue 13: "80 MB of JSON -> +1.5 GB"):
- `decode`: in a fresh process, the REST handler's decoding alone (json_request.decode_body
  + inputs_from_doc: JSON -> numpy), peak RSS growth over the RSS before it;
- `server`: a real tfmodel-server with a [-1, 784] float model; the body is POSTed to
  :predict and the server's peak RSS growth (VmHWM after, VmRSS before) is reported.
The peak is reset through /proc/PID/clear_refs before each measurement.

    python -m bench.rest_decode_memory --mb 80            # both
    python -m bench.rest_decode_memory --mb 80 --only decode
    PYTHONPATH=/old/tree/server python -m bench.rest_decode_memory   # another tree's numbers
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.summary import peak_bytes, reset_peak, rss_bytes
from tests.ports import free_port

_DECODE_CHILD = """
import gc, sys
from tfmodel_server.codecs import json_request
from bench.summary import peak_bytes, reset_peak, rss_bytes
try:
    from tfmodel_server.codecs.limits import DecodeBudget
    extra = (DecodeBudget(1 << 40),)
except ImportError:  # a tree from before the decoded-bytes cap, for "before" numbers
    extra = ()
body = open(sys.argv[1], "rb").read()
gc.collect()
reset_peak("self")
before = rss_bytes("self")
try:
    doc = json_request.decode_body(body, split_numbers=True)  # what the REST handler does
except TypeError:  # an older tree
    doc = json_request.decode_body(body)
inputs, _ = json_request.inputs_from_doc(doc, {"x": (1, None)}, *extra)
print(peak_bytes("self") - before, inputs["x"].shape)
"""


def make_body(path: Path, megabytes: float, decimals: int = 6) -> int:
    """{"instances": [[784 floats], ...]} of about `megabytes` MB, values in [0, 1) with
    `decimals` digits (6: "0.636962", 2: "0.64"; shorter tokens mean more numbers a MB)."""
    import numpy as np
    import orjson

    rng = np.random.default_rng(0)
    row = orjson.dumps(np.round(rng.random(784), decimals).tolist())
    rows = max(1, int(megabytes * 1e6 / (len(row) + 1)))
    with open(path, "wb") as f:
        f.write(b'{"instances": [')
        for i in range(rows):
            if i:
                f.write(b",")
            f.write(orjson.dumps(np.round(rng.random(784), decimals).tolist()))
        f.write(b"]}")
    return path.stat().st_size


def measure_decode(body: Path) -> int:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    out = subprocess.run(
        [sys.executable, "-c", _DECODE_CHILD, str(body)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        cwd=Path(__file__).resolve().parent.parent,
    ).stdout.split()
    return int(out[0])


def _export_model(path: Path) -> None:
    import tensorflow as tf

    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float32, shape=[None, 784], name="x")
        y = tf.reduce_sum(x, axis=1, name="y")
        info = v1.saved_model.utils.build_tensor_info
        signature = v1.saved_model.signature_def_utils.build_signature_def(
            inputs={"x": info(x)}, outputs={"y": info(y)}, method_name="tensorflow/serving/predict"
        )
        with v1.Session(graph=graph) as session:
            builder = v1.saved_model.Builder(str(path))
            builder.add_meta_graph_and_variables(
                session, ["serve"], signature_def_map={"serving_default": signature}
            )
            builder.save()


def measure_server(body: Path, work: Path) -> int:
    import requests

    _export_model(work / "model" / "1")
    grpc_port, rest_port = free_port(), free_port()
    cmd = [
        sys.executable,
        "-m",
        "tfmodel_server",
        f"--port={grpc_port}",
        f"--rest_api_port={rest_port}",
        "--bind_address=127.0.0.1",
        "--model_name=m",
        f"--model_base_path={work / 'model'}",
    ]
    log = open(work / "server.log", "wb")
    proc = subprocess.Popen(
        cmd, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    )
    try:
        url = f"http://127.0.0.1:{rest_port}"
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.2)
        small = {"instances": [[0.0] * 784]}
        assert requests.post(f"{url}/v1/models/m:predict", json=small, timeout=30).ok
        data = body.read_bytes()
        time.sleep(0.5)
        reset_peak(proc.pid)
        before = rss_bytes(proc.pid)
        r = requests.post(f"{url}/v1/models/m:predict", data=data, timeout=600)
        r.raise_for_status()
        return peak_bytes(proc.pid) - before
    finally:
        proc.terminate()
        proc.wait(60)
        log.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=80.0, help="body size in MB")
    parser.add_argument("--decimals", type=int, default=6, help="digits after the point")
    parser.add_argument("--only", choices=["decode", "server"], default=None)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="rest-decode-memory-") as tmp:
        work = Path(tmp)
        body = work / "body.json"
        size = make_body(body, args.mb, args.decimals)
        result: dict[str, object] = {"body_bytes": size, "decimals": args.decimals}
        if args.only in (None, "decode"):
            grew = measure_decode(body)
            result["decode_peak_growth_bytes"] = grew
            result["decode_ratio"] = round(grew / size, 2)
        if args.only in (None, "server"):
            grew = measure_server(body, work)
            result["server_peak_growth_bytes"] = grew
            result["server_ratio"] = round(grew / size, 2)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
