"""TensorFlow's ProfilerService on the gRPC port (--enable_profiler, default true).

TF Serving registers tsl::profiler::CreateProfilerService() next to its own
services, so `profiler_client.trace(grpc_addr, logdir, duration_ms)` (and
TensorBoard's capture button) records a trace of the running server. Here one
Profile RPC runs TensorFlow's in-process profiler for duration_ms and writes
the XSpace where the client's session expects it:
repository_root/session_id/host_name.xplane.pb (tsl SaveXSpace's layout).

The request/response messages are declared by their official names and field
numbers (tsl/profiler/protobuf/profiler_service.proto); fields this server
does not use are skipped by the parser.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import socket
import tempfile
import threading
from pathlib import Path

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

log = logging.getLogger(__name__)

SERVICE_NAME = "tensorflow.ProfilerService"
_FDP = descriptor_pb2.FieldDescriptorProto
# One trace at a time: TensorFlow's profiler is process-wide.
_TRACE_LOCK = threading.Lock()


def _messages():
    file_proto = descriptor_pb2.FileDescriptorProto(
        name="tsl/profiler/protobuf/profiler_service.proto", package="tensorflow", syntax="proto3"
    )
    request = file_proto.message_type.add(name="ProfileRequest")
    for name, number, kind in (
        ("duration_ms", 1, _FDP.TYPE_UINT64),
        ("max_events", 2, _FDP.TYPE_UINT64),
        ("repository_root", 5, _FDP.TYPE_STRING),
        ("session_id", 6, _FDP.TYPE_STRING),
        ("host_name", 7, _FDP.TYPE_STRING),
    ):
        request.field.add(name=name, number=number, type=kind, label=_FDP.LABEL_OPTIONAL)
    response = file_proto.message_type.add(name="ProfileResponse")
    response.field.add(name="empty_trace", number=7, type=_FDP.TYPE_BOOL, label=_FDP.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file_proto)
    get = message_factory.GetMessageClass
    return (
        get(pool.FindMessageTypeByName("tensorflow.ProfileRequest")),
        get(pool.FindMessageTypeByName("tensorflow.ProfileResponse")),
    )


ProfileRequest, ProfileResponse = _messages()


def _trace(duration_ms: int, repository_root: str, session_id: str, host_name: str) -> bool:
    """Blocking: profile this process for duration_ms; True if a trace was written."""
    import time

    import tensorflow as tf

    with _TRACE_LOCK, tempfile.TemporaryDirectory(prefix="tfmodel-profile-") as logdir:
        tf.profiler.experimental.start(logdir)
        try:
            time.sleep(max(duration_ms, 1) / 1000.0)
        finally:
            tf.profiler.experimental.stop()
        planes = sorted(Path(logdir).glob("plugins/profile/*/*.xplane.pb"))
        if not planes:
            return False
        if repository_root:
            target = (
                Path(repository_root)
                / session_id
                / f"{host_name or socket.gethostname()}.xplane.pb"
            )
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(planes[-1], target)
        return True


async def _profile(request, context: grpc.aio.ServicerContext):
    if not _TRACE_LOCK.acquire(blocking=False):
        await context.abort(grpc.StatusCode.UNAVAILABLE, "another profiling session is active")
    _TRACE_LOCK.release()
    try:
        wrote = await asyncio.to_thread(
            _trace,
            int(request.duration_ms),
            request.repository_root,
            request.session_id,
            request.host_name,
        )
    except Exception as e:  # a profiler failure is the caller's error, never a crash
        log.exception("profiling failed")
        await context.abort(grpc.StatusCode.INTERNAL, f"profiling failed: {e}")
    log.info("profile session %s: %s", request.session_id, "written" if wrote else "empty")
    return ProfileResponse(empty_trace=not wrote)


def add_profiler_service(server: grpc.aio.Server) -> None:
    handler = grpc.method_handlers_generic_handler(
        SERVICE_NAME,
        {
            "Profile": grpc.unary_unary_rpc_method_handler(
                _profile,
                request_deserializer=ProfileRequest.FromString,
                response_serializer=ProfileResponse.SerializeToString,
            )
        },
    )
    server.add_generic_rpc_handlers((handler,))
