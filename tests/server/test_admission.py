"""Admission budget and cgroup memory-limit reading (model_servers/admission.py, memory_limit.py).

The cgroup trees here are real directories laid out as the kernel's (v1 memory
controller, v2 unified, hybrid); the server-level behaviour is in test_overload.py.
"""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from tfmodel_server.model_servers import admission, memory_limit
from tfmodel_server.model_servers.admission import (
    AUTO,
    MIN_REQUEST_CHARGE,
    AdmissionControl,
    AdmissionLimits,
    Refused,
    derive_limits,
)

MiB = 1 << 20
V1_UNLIMITED = "9223372036854771712\n"


def _write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


# ---- cgroup memory limit ---------------------------------------------------------------


def test_v2_limit_of_own_cgroup(tmp_path: Path):
    _write(tmp_path, "cgroup.controllers", "cpu memory\n")
    _write(tmp_path, "kubepods/pod1/ctr/memory.max", f"{768 * MiB}\n")
    _write(tmp_path, "kubepods/pod1/memory.max", "max\n")
    limit = memory_limit.cgroup_memory_limit(tmp_path, "0::/kubepods/pod1/ctr\n")
    assert limit == 768 * MiB


def test_v2_smallest_of_ancestors(tmp_path: Path):
    """A pod-level limit below the container's (or the container has none) still binds."""
    _write(tmp_path, "cgroup.controllers", "memory\n")
    _write(tmp_path, "kubepods/pod1/memory.max", f"{512 * MiB}\n")
    _write(tmp_path, "kubepods/pod1/ctr/memory.max", "max\n")
    limit = memory_limit.cgroup_memory_limit(tmp_path, "0::/kubepods/pod1/ctr\n")
    assert limit == 512 * MiB


def test_v2_namespaced_root(tmp_path: Path):
    """Inside a cgroup namespace the process sees itself at "/" with the limit at the mount."""
    _write(tmp_path, "cgroup.controllers", "memory\n")
    _write(tmp_path, "memory.max", f"{1024 * MiB}\n")
    assert memory_limit.cgroup_memory_limit(tmp_path, "0::/\n") == 1024 * MiB


def test_v2_unlimited(tmp_path: Path):
    _write(tmp_path, "cgroup.controllers", "memory\n")
    _write(tmp_path, "a/memory.max", "max\n")
    assert memory_limit.cgroup_memory_limit(tmp_path, "0::/a\n") is None


def test_v1_memory_controller(tmp_path: Path):
    proc = "12:pids:/x\n4:memory:/docker/abc\n1:name=systemd:/docker/abc\n0::/\n"
    _write(tmp_path, "memory/memory.limit_in_bytes", V1_UNLIMITED)
    _write(tmp_path, "memory/docker/memory.limit_in_bytes", V1_UNLIMITED)
    _write(tmp_path, "memory/docker/abc/memory.limit_in_bytes", f"{2048 * MiB}\n")
    assert memory_limit.cgroup_memory_limit(tmp_path, proc) == 2048 * MiB


def test_v1_unlimited_and_hierarchy(tmp_path: Path):
    proc = "4:memory:/parent/child\n"
    _write(tmp_path, "memory/parent/child/memory.limit_in_bytes", V1_UNLIMITED)
    assert memory_limit.cgroup_memory_limit(tmp_path, proc) is None
    _write(tmp_path, "memory/parent/memory.limit_in_bytes", f"{300 * MiB}\n")
    assert memory_limit.cgroup_memory_limit(tmp_path, proc) == 300 * MiB


def test_hybrid_prefers_v1_memory(tmp_path: Path):
    """systemd's hybrid layout: v2 at unified/ (no memory there), memory on v1."""
    proc = "4:memory:/svc\n0::/svc\n"
    _write(tmp_path, "unified/cgroup.controllers", "")
    _write(tmp_path, "memory/svc/memory.limit_in_bytes", f"{640 * MiB}\n")
    assert memory_limit.cgroup_memory_limit(tmp_path, proc) == 640 * MiB


def test_no_cgroup_fs(tmp_path: Path):
    assert memory_limit.cgroup_memory_limit(tmp_path, "4:memory:/a\n0::/a\n") is None


def test_this_process_reads_something_sane():
    limit = memory_limit.cgroup_memory_limit()
    assert limit is None or limit > 0
    assert memory_limit.resident_bytes() > 0
    assert memory_limit.usable_cores() >= 1


# ---- deriving the budget ------------------------------------------------------------------


def test_derive_without_memory_limit_is_tf_serving_no_limit():
    limits = derive_limits(AUTO, 0, None, 300 * MiB)
    assert limits == AdmissionLimits(0, 0, limits.origin)
    assert not limits.enabled


def test_derive_from_memory_limit():
    limits = derive_limits(AUTO, 0, 1024 * MiB, 224 * MiB)
    expected = int(800 * MiB * admission.HEADROOM_SHARE / admission.MEMORY_PER_REQUEST_BYTE)
    assert limits.max_bytes == expected
    assert limits.max_requests == 0
    assert "memory limit" in limits.origin


def test_derive_floor_when_no_headroom():
    limits = derive_limits(AUTO, 0, 256 * MiB, 400 * MiB)
    assert limits.max_bytes == admission.MIN_DERIVED_BYTES


def test_explicit_flags_win():
    assert derive_limits(5 * MiB, 7, 1024 * MiB, 0) == AdmissionLimits(
        5 * MiB, 7, "--max_inflight_request_bytes=5242880"
    )
    off = derive_limits(0, 0, 1024 * MiB, 0)
    assert not off.enabled


# ---- the budget ---------------------------------------------------------------------------


def test_admit_release_and_refuse_bytes():
    refusals: list[tuple[str, str]] = []
    control = AdmissionControl(AdmissionLimits(10 * MiB), lambda p, r: refusals.append((p, r)))
    a = control.admit(6 * MiB, "rest")
    with pytest.raises(Refused) as info:
        control.admit(5 * MiB, "grpc")  # the budget is shared across protocols
    err = info.value
    assert err.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert err.http_status == 429 and err.retryable
    assert "--max_inflight_request_bytes" in err.message
    assert refusals == [("grpc", admission.REASON_BYTES)]
    b = control.admit(4 * MiB, "grpc")
    assert control.inflight_bytes == 10 * MiB and control.inflight_requests == 2
    a.release()
    a.release()  # idempotent
    b.release()
    assert control.inflight_bytes == 0 and control.inflight_requests == 0
    control.admit(5 * MiB, "grpc").release()


def test_small_requests_are_charged_a_minimum():
    control = AdmissionControl(AdmissionLimits(4 * MIN_REQUEST_CHARGE))
    tickets = [control.admit(10, "rest") for _ in range(4)]
    with pytest.raises(Refused):
        control.admit(0, "rest")
    for t in tickets:
        t.release()


def test_larger_than_the_whole_budget_is_not_retryable():
    refusals: list[tuple[str, str]] = []
    control = AdmissionControl(AdmissionLimits(MiB), lambda p, r: refusals.append((p, r)))
    with pytest.raises(Refused) as info:
        control.admit(2 * MiB, "rest")
    assert not info.value.retryable and info.value.http_status == 413
    assert refusals == [("rest", admission.REASON_TOO_LARGE)]
    assert control.inflight_requests == 0


def test_requests_limit():
    control = AdmissionControl(AdmissionLimits(0, 2))
    t1, t2 = control.admit(0, "rest"), control.admit(50 * MiB, "grpc")
    with pytest.raises(Refused) as info:
        control.admit(0, "grpc")
    assert "--max_inflight_requests" in info.value.message
    assert info.value.reason == admission.REASON_REQUESTS
    t1.release()
    control.admit(0, "grpc")
    t2.release()


def test_chunked_body_grows_its_charge():
    control = AdmissionControl(AdmissionLimits(4 * MiB))
    other = control.admit(MiB, "grpc")
    ticket = control.admit(0, "rest")  # no Content-Length: the minimum first
    ticket.grow(2 * MiB)
    assert control.inflight_bytes == 3 * MiB
    with pytest.raises(Refused) as info:
        ticket.grow(3 * MiB + 1)
    assert info.value.retryable
    assert control.inflight_bytes == 3 * MiB  # a refused growth charges nothing
    with pytest.raises(Refused) as too_big:
        ticket.grow(5 * MiB)
    assert not too_big.value.retryable
    ticket.release()
    other.release()
    assert control.inflight_bytes == 0 and control.inflight_requests == 0


def test_no_limits_admits_everything():
    control = admission.unlimited()
    tickets = [control.admit(1 << 40, "rest") for _ in range(100)]
    assert control.inflight_requests == 100
    for t in tickets:
        t.release()


def test_grpc_receive_slots_refuse_at_once_and_free_on_exit():
    refusals: list[tuple[str, str]] = []
    control = AdmissionControl(
        AdmissionLimits(max_bytes=MiB), lambda p, r: refusals.append((p, r)), receive_slots=2
    )
    with control.receiving_grpc(), control.receiving_grpc():
        assert control.receiving == 2
        with pytest.raises(Refused) as info, control.receiving_grpc():
            pass
        assert info.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert info.value.retryable and "retry later" in info.value.message
    assert control.receiving == 0
    assert refusals == [(admission.PROTOCOL_GRPC, admission.REASON_RECEIVING)]
    with control.receiving_grpc():  # a slot is free again
        assert control.receiving == 1


def test_grpc_receive_slots_unused_without_limits():
    control = AdmissionControl(AdmissionLimits(), receive_slots=1)
    with control.receiving_grpc(), control.receiving_grpc(), control.receiving_grpc():
        pass  # TF Serving's behaviour: nothing refused
    assert control.refused == 0


def test_snapshot_counts_what_is_in_flight_per_protocol():
    control = AdmissionControl(AdmissionLimits(max_bytes=64 * MiB))
    rest = control.admit(2 * MiB, admission.PROTOCOL_REST)
    chunked = control.admit(0, admission.PROTOCOL_REST)
    chunked.grow(3 * MiB)
    grpc_ticket = control.admit(1000, admission.PROTOCOL_GRPC)
    assert control.snapshot() == {
        admission.PROTOCOL_REST: (2, 5 * MiB),
        admission.PROTOCOL_GRPC: (1, MIN_REQUEST_CHARGE),
    }
    for ticket in (rest, chunked, grpc_ticket, rest):  # release() twice is harmless
        ticket.release()
    assert control.snapshot() == {admission.PROTOCOL_REST: (0, 0), admission.PROTOCOL_GRPC: (0, 0)}


def test_snapshot_counts_without_limits_too():
    control = AdmissionControl(AdmissionLimits())
    ticket = control.admit(10 * MiB, admission.PROTOCOL_GRPC)
    assert control.snapshot()[admission.PROTOCOL_GRPC] == (1, 10 * MiB)
    ticket.release()
