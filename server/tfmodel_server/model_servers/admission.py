"""Admission control: one budget of in-flight requests and bytes, shared by gRPC and REST.

TF Serving admits every request it receives (its only bound is the batching
queue's max_enqueued_batches), so a burst of large, legal requests takes a pod
past its memory limit and the kernel kills it with everything in flight. Here
each prediction request is charged its size as received (a REST body's
Content-Length, or its bytes as they are read when chunked; a gRPC message's
length) before it is read or decoded, and refused when the budget is spent:
REST 429 with Retry-After, gRPC RESOURCE_EXHAUSTED. A refusal costs next to
nothing, so the requests already admitted keep the server's full capacity
(Envoy's overload manager, nginx's limit_conn: shed before memory runs out).

Defaults (flags.py): with a container memory limit, the bytes budget is derived
from it (`derive_limits`); without one, TF Serving's behaviour (no limit).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import grpc

from tfmodel_server.errors import ServingError
from tfmodel_server.model_servers.memory_limit import usable_cores

log = logging.getLogger(__name__)

BYTES_FLAG = "--max_inflight_request_bytes"
REQUESTS_FLAG = "--max_inflight_requests"
AUTO = -1  # the flags' default: derive from the container's memory limit

PROTOCOL_GRPC = "grpc"
PROTOCOL_REST = "rest"
REASON_BYTES = "inflight_bytes"
REASON_REQUESTS = "inflight_requests"
REASON_TOO_LARGE = "larger_than_budget"
REASON_RECEIVING = "grpc_receiving"

# Every request is charged at least this much: a request's buffers, handler task and
# response cost memory whatever its size, so the bytes budget also bounds their number.
MIN_REQUEST_CHARGE = 64 * 1024

# Peak memory one in-flight request takes per byte of it on the wire, measured on a
# real server (docs/overload.md, `bench/overload.py --measure-footprint`): a REST JSON
# body is read (1x), parsed in pieces to numpy (~1x the float32 tensor), run and
# answered; a gRPC message is parsed (1x) and copied into the TF call (1x).
MEMORY_PER_REQUEST_BYTE = 4
# Share of the memory left after start-up (limit minus RSS with the models loaded) that
# admitted requests may take. The rest covers what the budget cannot see: gRPC messages
# grpc core is still receiving (whole, before any Python code runs), refused REST bodies
# being discarded, allocator slack, models loaded later. 0.5 was OOM-killed at 1 GiB by
# bench/overload.py's burst (8 x 12.5 MB gRPC + 8 x 30 MB REST, closed loop).
HEADROOM_SHARE = 0.25
# Below this the derived budget is not lowered further (a pod with no headroom left
# still serves one small request at a time rather than refusing everything).
MIN_DERIVED_BYTES = 4 * MIN_REQUEST_CHARGE

RETRY_AFTER_SECONDS = 1

# gRPC prediction calls whose message is still being received, per core (at least
# MIN_RECEIVE_SLOTS). grpc core buffers a call's whole message as it arrives, whether
# or not the handler reads it yet (measured: calls held waiting for their turn were
# buffered all the same), and its size is unknown until it is whole; so a call
# arriving while this many are being received is refused at once, before grpc core
# has more of it than HTTP/2 flow control let through (docs/overload.md,
# bench/grpc_flood.py). A message that has arrived is then charged its size.
RECEIVE_SLOTS_PER_CORE = 1
MIN_RECEIVE_SLOTS = 2

RefusalObserver = Callable[[str, str], None]  # (protocol, reason)


@dataclass(frozen=True)
class AdmissionLimits:
    max_bytes: int = 0  # 0 = no limit
    max_requests: int = 0  # 0 = no limit
    origin: str = "TF Serving's default: no limit"

    @property
    def enabled(self) -> bool:
        return bool(self.max_bytes or self.max_requests)


def derive_limits(
    max_bytes_flag: int,
    max_requests_flag: int,
    memory_limit: int | None,
    resident: int,
) -> AdmissionLimits:
    """The budget from the flags; AUTO (-1) bytes derives it from the memory limit.

    Derived: (memory limit - resident set after the initial models loaded) x
    HEADROOM_SHARE / MEMORY_PER_REQUEST_BYTE, at least MIN_DERIVED_BYTES. No memory
    limit (or an explicit 0): no bytes limit. The requests limit is never derived
    (AUTO = none): the per-request minimum charge already bounds the count.
    """
    max_requests = max(max_requests_flag, 0)
    if max_bytes_flag != AUTO:
        return AdmissionLimits(max_bytes_flag, max_requests, f"{BYTES_FLAG}={max_bytes_flag}")
    if memory_limit is None:
        return AdmissionLimits(0, max_requests, "no container memory limit: no bytes limit")
    headroom = memory_limit - resident
    derived = max(int(headroom * HEADROOM_SHARE / MEMORY_PER_REQUEST_BYTE), MIN_DERIVED_BYTES)
    origin = (
        f"derived from the memory limit {memory_limit} B: (limit - RSS {resident} B) x "
        f"{HEADROOM_SHARE} / {MEMORY_PER_REQUEST_BYTE}"
    )
    return AdmissionLimits(derived, max_requests, origin)


class Refused(ServingError):
    """RESOURCE_EXHAUSTED; `retryable` is False for a request larger than the whole budget."""

    def __init__(self, message: str, reason: str, retryable: bool = True) -> None:
        super().__init__(grpc.StatusCode.RESOURCE_EXHAUSTED, message)
        self.reason = reason
        self.retryable = retryable

    @property
    def http_status(self) -> int:
        return 429 if self.retryable else 413


class Ticket:
    """One admitted request's charge; release() is idempotent."""

    __slots__ = ("_control", "charged", "protocol", "released")

    def __init__(self, control: AdmissionControl, charged: int, protocol: str) -> None:
        self._control = control
        self.charged = charged
        self.protocol = protocol
        self.released = False

    def grow(self, total_bytes: int) -> None:
        """A chunked body has now `total_bytes`: charge the difference, or Refused."""
        self._control._grow(self, total_bytes)  # noqa: SLF001

    def release(self) -> None:
        self._control._release(self)  # noqa: SLF001


class AdmissionControl:
    """The shared budget. Cheap enough to call on the event loop for every request."""

    def __init__(
        self,
        limits: AdmissionLimits,
        on_refused: RefusalObserver | None = None,
        receive_slots: int = 0,
    ) -> None:
        self.limits = limits
        self.on_refused = on_refused
        self._lock = threading.Lock()
        self.inflight_bytes = 0
        self.inflight_requests = 0
        self.refused = 0
        self.receive_slots = receive_slots or max(
            MIN_RECEIVE_SLOTS, usable_cores() * RECEIVE_SLOTS_PER_CORE
        )
        self.receiving = 0
        # protocol -> [requests, bytes] admitted now (the in-flight gauges).
        self._by_protocol: dict[str, list[int]] = {PROTOCOL_GRPC: [0, 0], PROTOCOL_REST: [0, 0]}

    @contextmanager
    def receiving_grpc(self) -> Iterator[None]:
        """Hold one of the gRPC receive slots while a call's message is received, or
        Refused when none is free. Only with limits enabled (else TF Serving's
        behaviour: every call is received)."""
        if not self.limits.enabled:
            yield
            return
        with self._lock:
            if self.receiving >= self.receive_slots:
                self._refuse(
                    PROTOCOL_GRPC,
                    REASON_RECEIVING,
                    f"Server busy: {self.receiving} gRPC requests are being received (a "
                    "message's size is known only once it has arrived, so few are received "
                    f"at once; {BYTES_FLAG} bounds the rest); retry later",
                )
            self.receiving += 1
        try:
            yield
        finally:
            with self._lock:
                self.receiving -= 1

    def admit(self, nbytes: int, protocol: str) -> Ticket:
        """Charge a request of `nbytes` (0 when not known yet) or raise Refused.

        Called for every prediction request, limits or not (without limits nothing is
        refused; the charge feeds the in-flight gauges)."""
        charge = max(nbytes, MIN_REQUEST_CHARGE)
        limits = self.limits
        with self._lock:
            if limits.max_bytes and charge > limits.max_bytes:
                self._refuse(
                    protocol,
                    REASON_TOO_LARGE,
                    f"Request of {nbytes} bytes is larger than this server's whole in-flight "
                    f"budget of {limits.max_bytes} bytes ({BYTES_FLAG}); it cannot be served "
                    "here",
                    retryable=False,
                )
            if limits.max_requests and self.inflight_requests >= limits.max_requests:
                self._refuse(
                    protocol,
                    REASON_REQUESTS,
                    f"Server busy: {self.inflight_requests} requests in flight, the limit is "
                    f"{limits.max_requests} ({REQUESTS_FLAG}); retry later",
                )
            if limits.max_bytes and self.inflight_bytes + charge > limits.max_bytes:
                self._refuse(protocol, REASON_BYTES, self._bytes_message(charge))
            self.inflight_bytes += charge
            self.inflight_requests += 1
            counts = self._by_protocol.setdefault(protocol, [0, 0])
            counts[0] += 1
            counts[1] += charge
        return Ticket(self, charge, protocol)

    def _grow(self, ticket: Ticket, total_bytes: int) -> None:
        extra = total_bytes - ticket.charged
        if extra <= 0:
            return
        limits = self.limits
        with self._lock:
            if limits.max_bytes and total_bytes > limits.max_bytes:
                self._refuse(
                    ticket.protocol,
                    REASON_TOO_LARGE,
                    f"Request body of more than {ticket.charged} bytes is larger than this "
                    f"server's whole in-flight budget of {limits.max_bytes} bytes "
                    f"({BYTES_FLAG}); it cannot be served here",
                    retryable=False,
                )
            if limits.max_bytes and self.inflight_bytes + extra > limits.max_bytes:
                self._refuse(ticket.protocol, REASON_BYTES, self._bytes_message(total_bytes))
            self.inflight_bytes += extra
            self._by_protocol[ticket.protocol][1] += extra
            ticket.charged = total_bytes

    def _release(self, ticket: Ticket) -> None:
        with self._lock:
            if ticket.released:
                return
            ticket.released = True
            self.inflight_bytes -= ticket.charged
            self.inflight_requests -= 1
            counts = self._by_protocol[ticket.protocol]
            counts[0] -= 1
            counts[1] -= ticket.charged

    def snapshot(self) -> dict[str, tuple[int, int]]:
        """protocol -> (requests, bytes) admitted and not yet answered, for the gauges."""
        with self._lock:
            return {p: (c[0], c[1]) for p, c in self._by_protocol.items()}

    def _bytes_message(self, charge: int) -> str:
        return (
            f"Server busy: {self.inflight_bytes} bytes of requests in flight, this one needs "
            f"{charge} more and the limit is {self.limits.max_bytes} ({BYTES_FLAG}); "
            "retry later"
        )

    def _refuse(self, protocol: str, reason: str, message: str, retryable: bool = True) -> None:
        """Count, report and raise (called with the lock held; the observer only counts)."""
        self.refused += 1
        if self.refused == 1 or self.refused % 1000 == 0:
            log.warning("admission: refusing requests (%d so far): %s", self.refused, message)
        if self.on_refused is not None:
            self.on_refused(protocol, reason)
        raise Refused(message, reason, retryable)


def unlimited() -> AdmissionControl:
    return AdmissionControl(AdmissionLimits())
