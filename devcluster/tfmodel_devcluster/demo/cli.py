"""`tfmodel-demo export | client | walkthrough`."""

from __future__ import annotations

import argparse
import os
import sys


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tfmodel-demo",
        description="TF Serving's MNIST tutorial on scikit-learn's bundled digits data.",
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

    walk = sub.add_parser("walkthrough", help="run the README walk-through end to end")
    walk.add_argument(
        "--workdir", default=None, help="keep the models and server log here (default: a temp dir)"
    )
    walk.add_argument("--num_tests", type=int, default=1000)
    walk.add_argument("--concurrency", type=int, default=10)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # hide TF's C++ start-up chatter

    if args.command == "export":
        from tfmodel_server.demo.export import export_model

        try:
            export_model(args.export_dir, args.training_iteration, args.model_version)
        except (ValueError, FileExistsError) as exc:
            print(exc, file=sys.stderr)
            return 1
        return 0

    if args.command == "client":
        from tfmodel_server.demo.client import do_inference, format_error_rate

        if args.num_tests > 10000:
            print("num_tests should not be greater than 10k", file=sys.stderr)
            return 2
        if not args.server:
            print("please specify server host:port", file=sys.stderr)
            return 2
        result = do_inference(args.server, args.concurrency, args.num_tests, args.model_name)
        print("\n" + format_error_rate(result.error_rate))
        return 1 if result.failed_rpcs else 0

    from tfmodel_server.demo.walkthrough import run_walkthrough

    return run_walkthrough(args.workdir, args.num_tests, args.concurrency)


if __name__ == "__main__":
    sys.exit(main())
