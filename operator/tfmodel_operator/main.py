"""`tfmodel-operator`: run the TFModel operator (wraps `kopf run`)."""

from __future__ import annotations

import argparse
import sys


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="tfmodel-operator", description="Kubernetes operator for TFModel resources."
    )
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "--namespace",
        "-n",
        action="append",
        default=[],
        help="watch only this namespace (repeatable); needs only a namespaced Role there",
    )
    scope.add_argument(
        "--all-namespaces", "-A", action="store_true", help="watch every namespace (the default)"
    )
    parser.add_argument(
        "--liveness",
        default="http://0.0.0.0:8080/healthz",
        help="liveness endpoint URL served by kopf ('' to disable)",
    )
    parser.add_argument(
        "--status-interval",
        type=float,
        default=15.0,
        help="seconds between status refreshes and drift repair",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=16,
        help="threads running reconciles (API calls and pod probes); bounds the concurrent "
        "API requests whatever the number of TFModels",
    )
    parser.add_argument("--verbose", "-v", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.status_interval <= 0:
        print("tfmodel-operator: --status-interval must be positive", file=sys.stderr)
        return 2
    if args.workers < 1:
        print("tfmodel-operator: --workers must be at least 1", file=sys.stderr)
        return 2
    import kopf

    from . import handlers

    registry = handlers.register(
        kopf.OperatorRegistry(), status_interval=args.status_interval, workers=args.workers
    )
    # One log handler (kopf's), each object's line prefixed with [namespace/name].
    kopf.configure(verbose=args.verbose, log_prefix=True)
    kopf.run(
        registry=registry,
        standalone=True,
        clusterwide=not args.namespace,
        namespaces=args.namespace,
        liveness_endpoint=args.liveness or None,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
