"""One metrics page for `--workers N`: every worker's series, summed.

Each worker serves its own page on a UNIX socket in the directory the parent
process made (`metrics-<index>.sock`); the page on the REST port, whichever
worker answers it, reads every worker's page and sums samples with identical
names and labels. Every family here is a counter or a histogram (no gauges),
so the sum is the whole server's figure. A worker that does not answer within
the timeout (restarting) is left out of that scrape, with a warning logged.

prometheus_client's multiprocess mode does not fit: the families are the
server's own collectors (TF Serving's sample names and bucket labels), not
prometheus_client metric objects writing mmap files.
"""

from __future__ import annotations

import asyncio
import glob
import logging
import os
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

SOCKET_PATTERN = "metrics-*.sock"
PEER_TIMEOUT_SECONDS = 2.0


def socket_path(worker_dir: str, index: int) -> str:
    return os.path.join(worker_dir, f"metrics-{index}.sock")


def sum_pages(pages: Iterable[str]) -> list[Metric]:
    """Families of every page, samples with equal name and labels summed (first-seen order)."""
    families: dict[str, Metric] = {}
    sums: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
    for page in pages:
        for family in text_string_to_metric_families(page):
            if family.name not in families:
                families[family.name] = Metric(family.name, family.documentation, family.type)
                sums[family.name] = {}
            cells = sums[family.name]
            for sample in family.samples:
                key = (sample.name, tuple(sample.labels.items()))
                cells[key] = cells.get(key, 0.0) + sample.value
    for name, metric in families.items():
        for (sample_name, labels), value in sums[name].items():
            metric.add_sample(sample_name, dict(labels), value)
    return list(families.values())


class _Static(Collector):
    def __init__(self, metrics: list[Metric]) -> None:
        self.metrics = metrics

    def collect(self) -> Iterable[Metric]:
        return self.metrics


def render_sum(pages: Iterable[str]) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Static(sum_pages(pages)))
    return generate_latest(registry)


class WorkerMetrics:
    """This worker's page on its socket, and the summed page for the REST route."""

    def __init__(self, worker_dir: str, index: int, render_local: Callable[[], bytes]) -> None:
        self.worker_dir = worker_dir
        self.index = index
        self.render_local = render_local
        self._runner: object = None

    async def start(self) -> None:
        from aiohttp import web

        async def local(request: web.Request) -> web.Response:
            return web.Response(body=self.render_local())

        app = web.Application()
        app.router.add_get("/metrics", local)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        path = socket_path(self.worker_dir, self.index)
        if os.path.exists(path):
            os.unlink(path)  # left by this worker's previous (dead) process
        await web.UnixSite(runner, path).start()
        self._runner = runner

    async def _peer_page(self, path: str) -> str | None:
        import aiohttp

        try:
            connector = aiohttp.UnixConnector(path=path)
            timeout = aiohttp.ClientTimeout(total=PEER_TIMEOUT_SECONDS)
            async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
                async with session.get("http://worker/metrics") as response:
                    return await response.text()
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as e:
            log.warning("metrics of worker socket %s not read: %s", path, e)
            return None

    async def render(self) -> bytes:
        own = socket_path(self.worker_dir, self.index)
        peers = [
            p for p in sorted(glob.glob(os.path.join(self.worker_dir, SOCKET_PATTERN))) if p != own
        ]
        pages = [self.render_local().decode()]
        for page in await asyncio.gather(*(self._peer_page(p) for p in peers)):
            if page is not None:
                pages.append(page)
        # Summing parses text: off the event loop, it grows with the series count.
        return await asyncio.to_thread(render_sum, pages)

    def handler(self, content_type: str) -> Callable:
        from aiohttp import web

        async def handle(request: web.Request) -> web.Response:
            return web.Response(body=await self.render(), headers={"Content-Type": content_type})

        return handle
