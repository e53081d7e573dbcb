"""`tfmodel-server` entry point: flags, logging, optional worker processes."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import multiprocessing
import multiprocessing.connection
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import NoReturn

from tfmodel_server.flags import (
    STARTUP_FAILURE_EXIT_CODE,
    ServerOptions,
    parse_args,
    serving_marker,
)

WORKER_RESTART_DELAY_SECONDS = 1.0  # a worker crashing in a loop does not spin the parent


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
    from tfmodel_server.model_servers.platform_config import (
        PlatformConfigError,
        apply_platform_config_file,
    )
    from tfmodel_server.server import StartupError, serve

    try:
        try:
            options = apply_platform_config_file(options)
        except PlatformConfigError as e:
            raise StartupError(str(e)) from e
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
    """N spawned processes share the ports via SO_REUSEPORT; a dead one is restarted.

    Spawned (not forked) before TensorFlow or gRPC initialise in this process:
    neither survives a fork once its threads exist. Each worker gets its index
    and a directory shared with the others (metrics sockets, serving markers).
    A worker that dies after it started serving is started again; one that dies
    before (a bad config, a model that does not load) ends the server, as the
    start-up failure of a single process does.
    """
    ctx = multiprocessing.get_context("spawn")
    worker_dir = tempfile.mkdtemp(prefix="tfmodel-workers-")
    procs: dict[int, multiprocessing.process.BaseProcess] = {}
    stopping = False

    def spawn(index: int) -> None:
        marker = serving_marker(worker_dir, index)
        if os.path.exists(marker):
            os.unlink(marker)
        worker = dataclasses.replace(options, worker_index=index, worker_dir=worker_dir)
        proc = ctx.Process(target=run_one, args=(worker,), daemon=False)
        proc.start()
        procs[index] = proc

    def stop_all() -> None:
        for p in procs.values():
            if p.pid and p.is_alive():
                os.kill(p.pid, signal.SIGTERM)

    def forward(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True
        stop_all()

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for index in range(options.workers):
        spawn(index)
    code = 0
    try:
        while procs:
            multiprocessing.connection.wait([p.sentinel for p in procs.values()])
            for index, proc in list(procs.items()):
                if proc.is_alive():
                    continue
                proc.join()
                del procs[index]
                exitcode = proc.exitcode or 0
                if stopping:
                    code = code or exitcode
                elif os.path.exists(serving_marker(worker_dir, index)):
                    print(
                        f"tfmodel-server: worker {index} (pid {proc.pid}) exited with "
                        f"{exitcode}; starting it again",
                        file=sys.stderr,
                        flush=True,
                    )
                    time.sleep(WORKER_RESTART_DELAY_SECONDS)
                    spawn(index)
                else:
                    # Died before serving: the others would fail the same way.
                    code = exitcode or STARTUP_FAILURE_EXIT_CODE
                    stopping = True
                    stop_all()
    finally:
        shutil.rmtree(worker_dir, ignore_errors=True)
    return code


def main(argv: Sequence[str] | None = None) -> None:
    options = parse_args(argv)
    if options.workers > 1:
        sys.exit(_run_workers(options))
    sys.exit(run_one(options))


if __name__ == "__main__":
    main()
