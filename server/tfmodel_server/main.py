"""`tfmodel-server` entry point: flags, logging, optional worker processes."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from tfmodel_server.flags import STARTUP_FAILURE_EXIT_CODE, ServerOptions, parse_args


def _configure_logging() -> None:
    logging.basicConfig(
        level=os.environ.get("TFMODEL_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname).1s %(process)d %(name)s] %(message)s",
        stream=sys.stderr,
    )
    # TF's C++ INFO lines drown the server's own log.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")


def run_one(options: ServerOptions) -> int:
    """Serve in this process (imports TensorFlow and gRPC only here)."""
    _configure_logging()
    from tfmodel_server.extensions import build_extensions
    from tfmodel_server.server import StartupError, serve

    try:
        extensions = build_extensions(options)
        with asyncio.Runner(loop_factory=_loop_factory(options.event_loop)) as runner:
            code = runner.run(serve(options, extensions))
    except StartupError as e:
        # main.cc: "Failed to start server. Error: STATUS" on stdout, exit 255.
        logging.getLogger("tfmodel_server").error("%s", e)
        print(f"Failed to start server. Error: {e}", flush=True)
        print(f"tfmodel-server: error: {e}", file=sys.stderr)
        return STARTUP_FAILURE_EXIT_CODE
    _exit_now(code)


def _loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """asyncio's default loop, or uvloop's (libuv: measured faster for REST, equal for gRPC)."""
    if name == "uvloop":
        import uvloop

        return uvloop.new_event_loop
    return None


def _exit_now(code: int) -> NoReturn:
    """Requests drained, models unloaded, logs flushed: exit without TensorFlow's
    and gRPC's interpreter teardown, which takes seconds on a busy node and
    would count against the pod's termination grace period."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _run_workers(options: ServerOptions) -> int:
    """N spawned processes share the ports via SO_REUSEPORT.

    Spawned (not forked) before TensorFlow or gRPC initialise in this process:
    neither survives a fork once its threads exist.
    """
    ctx = multiprocessing.get_context("spawn")
    procs = [
        ctx.Process(target=run_one, args=(options,), daemon=False) for _ in range(options.workers)
    ]
    for p in procs:
        p.start()

    def forward(signum: int, frame: object) -> None:
        for p in procs:
            if p.pid and p.is_alive():
                os.kill(p.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    code = 0
    for p in procs:
        p.join()
        code = code or (p.exitcode or 0)
    return code


def main(argv: Sequence[str] | None = None) -> None:
    options = parse_args(argv)
    if options.workers > 1:
        sys.exit(_run_workers(options))
    sys.exit(run_one(options))


if __name__ == "__main__":
    main()
