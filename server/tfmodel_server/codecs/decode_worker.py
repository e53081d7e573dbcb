"""REST predict decoding in a process of its own: JSON body in, input arrays out.

Decoding a 30 MB JSON body in a thread of the server still holds the server's GIL for
most of its hundreds of milliseconds (py-spy --gil, docs/overload.md), so a 1-row request
or a kubelet probe waits behind it on the event loop. A decode process has its own GIL:
the server only copies bytes through a pipe (os.read/os.write release the GIL).

The process never imports TensorFlow (seconds to start, hundreds of MB): only numpy,
orjson, grpc (status codes) and the TF-free half of codecs/json_request.py.
tests/server/test_decode_processes.py checks that.

Run as `python -m tfmodel_server.codecs.decode_worker [NICE]`: requests on fd 0, answers
on the original fd 1 (fd 1 then points at stderr so that a stray print cannot corrupt the
stream). Messages are pickles (protocol 5) whose large buffers (the body, the arrays)
travel out of band, uncopied: see write_message / read_message.
"""

from __future__ import annotations

import ctypes
import os
import pickle
import struct
import sys
from collections.abc import Callable, Mapping
from typing import Any

from tfmodel_server.codecs import json_request
from tfmodel_server.codecs.limits import DecodeBudget
from tfmodel_server.errors import ServingError

# pickle bytes, number of out-of-band buffers; then one length per buffer.
_HEADER = struct.Struct("<QI")
_LENGTH = struct.Struct("<Q")

# A decode request: the body, the input specs of every signature of the version
# ("" for the default one), the --max_request_decoded_bytes budget.
SpecsBySignature = Mapping[str, json_request.InputSpecs]

# Answers (tuples, tag first):
OK = "ok"  # (OK, signature_name, inputs, format value)
PARSE_ERROR = "parse_error"  # (PARSE_ERROR, code name, message): the body is not valid
INPUT_ERROR = "input_error"  # (INPUT_ERROR, signature_name, code name, message)
FALLBACK = "fallback"  # (FALLBACK, why): decode it in the server (unknown signature, a bug)
READY = "ready"  # (READY, pid): sent once, when the imports are done


def _write_all(fd: int, data: memoryview) -> None:
    while data:
        data = data[os.write(fd, data) :]


def _read_exactly(fd: int, n: int) -> bytearray:
    buf = bytearray(n)
    view = memoryview(buf)
    while view:
        got = os.readv(fd, [view])
        if got == 0:
            raise EOFError("decode pipe closed")
        view = view[got:]
    return buf


def write_message(fd: int, message: object) -> None:
    buffers: list[pickle.PickleBuffer] = []
    data = pickle.dumps(message, protocol=5, buffer_callback=buffers.append)
    views = [b.raw() for b in buffers]
    head = _HEADER.pack(len(data), len(views)) + b"".join(_LENGTH.pack(v.nbytes) for v in views)
    _write_all(fd, memoryview(head + data))
    for view in views:
        _write_all(fd, view)


def read_message(fd: int) -> Any:
    size, count = _HEADER.unpack(_read_exactly(fd, _HEADER.size))
    lengths = [_LENGTH.unpack(_read_exactly(fd, _LENGTH.size))[0] for _ in range(count)]
    data = _read_exactly(fd, size)
    buffers = [_read_exactly(fd, n) for n in lengths]
    return pickle.loads(data, buffers=buffers)


def decode_predict(body: bytes, specs_by_signature: SpecsBySignature, max_bytes: int) -> tuple:
    """The REST handler's predict decoding (apis/rest_api.py), as one answer."""
    try:
        doc = json_request.decode_body(body, True)
    except ServingError as e:
        return (PARSE_ERROR, e.code.name, e.message)
    except Exception as e:  # a bug: the server's own path raises it the same way
        return (FALLBACK, f"{type(e).__name__}: {e}")
    del body
    signature_name = json_request.signature_name_of(doc)
    specs = specs_by_signature.get(signature_name)
    if specs is None:  # the server's signature lookup words the error
        return (FALLBACK, f"no signature {signature_name!r}")
    try:
        inputs, fmt = json_request.inputs_from_doc(doc, specs, DecodeBudget(max_bytes))
    except ServingError as e:
        return (INPUT_ERROR, signature_name, e.code.name, e.message)
    except Exception as e:
        return (FALLBACK, f"{type(e).__name__}: {e}")
    return (OK, signature_name, inputs, fmt.value)


def _release_freed_memory() -> Callable[[], object]:
    """glibc's malloc_trim: a decode's freed heap goes back to the kernel instead of
    staying charged to the pod (measured: 39-84 MB kept after a 28 MB body, 26 MB idle)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        return lambda: libc.malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        return lambda: None


def _serve(rfd: int, wfd: int) -> None:
    trim = _release_freed_memory()
    write_message(wfd, (READY, os.getpid()))
    while True:
        try:
            received, specs_by_signature, max_bytes = read_message(rfd)
        except EOFError:
            return
        body = bytes(received)  # the JSON scanners want bytes; free the received copy
        del received
        answer = decode_predict(body, specs_by_signature, max_bytes)
        del body
        write_message(wfd, answer)
        del answer
        trim()


def main(argv: list[str]) -> None:
    if argv:
        os.nice(int(argv[0]))
    wfd = os.dup(1)
    os.dup2(2, 1)
    _serve(0, wfd)


if __name__ == "__main__":
    main(sys.argv[1:])
