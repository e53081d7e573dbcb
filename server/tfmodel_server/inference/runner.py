"""Runs a signature off the event loop; the seam where batching plugs in.

The API layers (grpc_api, rest_api) never call Signature.run directly: they
await an InferenceRunner so TF work never blocks the event loop, and so
dynamic batching (batching.py) can replace the direct path without either API
layer knowing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

import numpy as np

from tfmodel_server.servables.tensorflow.servable import Servable, Signature


class InferenceRunner(Protocol):
    async def run(
        self,
        servable: Servable,
        signature: Signature,
        inputs: dict[str, np.ndarray],
        output_filter: Sequence[str] = (),
    ) -> dict[str, np.ndarray]:
        """Run validated inputs through the signature; returns outputs by alias."""
        ...

    def close(self) -> None: ...


class DirectRunner:
    """One TF call per request, in a thread pool."""

    def __init__(self, max_threads: int = 0) -> None:
        self._pool = ThreadPoolExecutor(
            max_workers=max_threads or None, thread_name_prefix="tf-run"
        )

    async def run(
        self,
        servable: Servable,
        signature: Signature,
        inputs: dict[str, np.ndarray],
        output_filter: Sequence[str] = (),
    ) -> dict[str, np.ndarray]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, signature.run, inputs, tuple(output_filter))

    def close(self) -> None:
        self._pool.shutdown(wait=True)
