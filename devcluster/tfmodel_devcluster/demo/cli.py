"""`tfmodel-demo export | client | walkthrough | cluster | down`.

export, client    TF Serving's MNIST tutorial tools (mnist_saved_model.py, mnist_client.py)
walkthrough       `make demo-server`: the tutorial against a local tfmodel-server (no cluster)
cluster, down     `make demo` / `make demo-down`: the operator, a TFModel and a canary rollout
                  on the embedded single-node cluster (root)
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tfmodel-demo",
        description="tfmodel's demos: TF Serving's MNIST tutorial on scikit-learn's bundled "
        "digits data, served by a local tfmodel-server or on the embedded cluster.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    export = sub.add_parser(
        "export",
        help="train a softmax classifier and export a SavedModel (like mnist_saved_model.py)",
    )
    export.add_argument(
        "--training_iteration", type=int, default=1000, help="number of training iterations."
    )
    export.add_argument("--model_version", type=int, default=1, help="version number of the model.")
    export.add_argument(
        "export_dir", help="model base path; the model is written to export_dir/<model_version>"
    )

    client = sub.add_parser(
        "client", help="send Predict requests and print the error rate (like mnist_client.py)"
    )
    client.add_argument(
        "--concurrency", type=int, default=1, help="maximum number of concurrent inference requests"
    )
    client.add_argument("--num_tests", type=int, default=100, help="Number of test images")
    client.add_argument("--server", default="", help="PredictionService host:port")
    client.add_argument("--model_name", default="mnist", help="model name to query")

    walk = sub.add_parser(
        "walkthrough", help="export, serve, query, hot-swap a version (make demo-server)"
    )
    walk.add_argument(
        "--workdir", default=None, help="keep the models and server log here (default: a temp dir)"
    )
    walk.add_argument("--num_tests", type=int, default=1000)
    walk.add_argument("--concurrency", type=int, default=10)

    demo = sub.add_parser(
        "cluster", help="the operator, a TFModel and a canary rollout on the embedded cluster"
    )
    demo.add_argument("--keep", action="store_true", help="leave the cluster up afterwards")
    demo.add_argument("--api-port", type=int, default=16443)
    demo.add_argument("--workdir", type=Path, default=None, help="log and plot directory")
    sub.add_parser("down", help="stop a cluster kept with `cluster --keep` (make demo-down)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # hide TF's C++ start-up chatter

    if args.command == "export":
        from tfmodel_devcluster.demo.export import export_model

        try:
            export_model(args.export_dir, args.training_iteration, args.model_version)
        except (ValueError, FileExistsError) as exc:
            print(exc, file=sys.stderr)
            return 1
        return 0

    if args.command == "client":
        from tfmodel_devcluster.demo.mnist_client import do_inference, format_error_rate

        if args.num_tests > 10000:
            print("num_tests should not be greater than 10k", file=sys.stderr)
            return 2
        if not args.server:
            print("please specify server host:port", file=sys.stderr)
            return 2
        result = do_inference(args.server, args.concurrency, args.num_tests, args.model_name)
        print("\n" + format_error_rate(result.error_rate))
        return 1 if result.failed_rpcs else 0

    if args.command in ("cluster", "down"):
        from tfmodel_devcluster.demo import cluster_demo

        if args.command == "down":
            return cluster_demo.main("down")
        return cluster_demo.main("run", args.keep, args.api_port, args.workdir)

    from tfmodel_devcluster.demo.walkthrough import run_walkthrough

    return run_walkthrough(args.workdir, args.num_tests, args.concurrency)


if __name__ == "__main__":
    sys.exit(main())
