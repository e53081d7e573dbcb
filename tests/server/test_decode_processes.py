"""REST decode processes (codecs/decode_worker.py, model_servers/decode_processes.py).

Real worker processes started as the server starts them; real servers compared with and
without them (--rest_decode_processes=0): same answers, same errors, byte for byte.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import requests
from tfmodel_server.codecs import decode_worker, dtypes
from tfmodel_server.codecs import json_request as jt
from tfmodel_server.codecs.dtypes import DT_FLOAT, DT_INT64, DT_STRING
from tfmodel_server.model_servers.decode_processes import DECODE_NICE, DecodeProcesses

from tests.server.savedmodels import export_linear, export_multi_input
from tests.server.serverproc import ServerProcess

MULTI = {"a": (DT_FLOAT, (-1, 2)), "b": (DT_INT64, (-1,)), "s": (DT_STRING, (-1,))}
LINEAR = {"x": (DT_FLOAT, (-1,))}
SPECS = {"serving_default": MULTI, "": MULTI, "linear": LINEAR}
LIMIT = 1 << 30


def test_the_dtype_table_is_tensorflows() -> None:
    """dtypes.py writes the enum out (no TensorFlow import): every value and name as TF's."""
    from tensorflow.core.framework import types_pb2

    written = {n: v for n, v in vars(dtypes).items() if n.startswith("DT_") and type(v) is int}
    assert len(written) >= 24
    for name, value in written.items():
        assert types_pb2.DataType.Value(name) == value, name
        assert dtypes.dtype_name(value) == name
    assert dtypes.dtype_name(types_pb2.DT_FLOAT_REF) == "DT_FLOAT_REF"  # beyond the table
    assert dtypes.dtype_name(12345) == "DataType(12345)"


def _decode(processes: DecodeProcesses, body: bytes, specs=SPECS) -> tuple | None:
    async def go():
        # Bounded: a process that is never handed back fails the test instead of hanging it.
        return await asyncio.wait_for(processes.decode_predict(body, specs, LIMIT), 120)

    return asyncio.run(go())


@pytest.fixture
def processes():
    p = DecodeProcesses(2)
    yield p
    p.close()


def _here(body: bytes) -> tuple:
    """What the server's own path makes of `body` (apis/rest_api.py, decoded here)."""
    doc = jt.decode_body(body, True)
    name = jt.signature_name_of(doc)
    inputs, fmt = jt.inputs_from_doc(doc, SPECS[name], jt.DecodeBudget(LIMIT))
    return name, inputs, fmt.value


BODIES = {
    "row objects": {"instances": [{"a": [i, i + 0.5], "b": i, "s": f"s{i}"} for i in range(3000)]},
    "columnar": {"inputs": {"a": [[1.5, 2.5]], "b": [7], "s": [{"b64": "aGk="}]}},
    "numeric array, other signature": {
        "signature_name": "linear",
        "instances": [i / 7 for i in range(20000)],
    },
}


@pytest.mark.parametrize("case", sorted(BODIES))
def test_a_process_decodes_as_the_server_does(processes: DecodeProcesses, case: str) -> None:
    body = json.dumps(BODIES[case]).encode()
    answer = _decode(processes, body)
    assert answer is not None and answer[0] == decode_worker.OK, answer
    _, name, inputs, fmt = answer
    want_name, want_inputs, want_fmt = _here(body)
    assert (name, fmt) == (want_name, want_fmt)
    assert inputs.keys() == want_inputs.keys()
    for alias, array in inputs.items():
        assert array.dtype == want_inputs[alias].dtype and array.shape == want_inputs[alias].shape
        assert np.array_equal(array, want_inputs[alias]), alias


def test_errors_come_back_with_the_servers_words(processes: DecodeProcesses) -> None:
    # Not JSON: the body's parse error.
    answer = _decode(processes, b'{"instances": [1, 2,')
    assert answer is not None and answer[0] == decode_worker.PARSE_ERROR
    with pytest.raises(jt.ServingError) as parsed_here:
        jt.decode_body(b'{"instances": [1, 2,', True)
    assert answer[1:] == (parsed_here.value.code.name, parsed_here.value.message)
    # Valid JSON, a value of the wrong type for the signature: an input error, with the
    # signature it was decoded for (the server counts it as that version's request).
    bad = json.dumps({"signature_name": "linear", "instances": [1.0] * 5000 + ["x"]}).encode()
    answer = _decode(processes, bad)
    assert answer is not None and answer[:2] == (decode_worker.INPUT_ERROR, "linear")
    with pytest.raises(jt.ServingError) as input_here:
        _here(bad)
    assert answer[2:] == (input_here.value.code.name, input_here.value.message)
    # A signature the version does not have: the server's lookup words that error.
    answer = _decode(processes, json.dumps({"signature_name": "nope", "instances": [1]}).encode())
    assert answer is not None and answer[0] == decode_worker.FALLBACK


def _maps(pid: int) -> str:
    return Path(f"/proc/{pid}/maps").read_text()


def test_processes_run_without_tensorflow_at_a_lower_priority(processes) -> None:
    pids = processes.wait_ready()
    assert len(pids) == 2
    assert _decode(processes, json.dumps(BODIES["columnar"]).encode())[0] == decode_worker.OK
    for pid in pids:
        assert "tensorflow" not in _maps(pid)
        assert "numpy" in _maps(pid)  # the maps are read right: numpy's libraries are there
        assert os.getpriority(os.PRIO_PROCESS, pid) == os.getpriority(os.PRIO_PROCESS, 0) + (
            DECODE_NICE
        )


def test_a_dead_process_is_replaced_and_costs_at_most_a_fallback(processes) -> None:
    pids = processes.wait_ready()
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    body = json.dumps(BODIES["columnar"]).encode()
    # A dead idle process is replaced when taken; one that dies while decoding costs that
    # request the speed-up only (None: the server decodes it itself).
    answers = [_decode(processes, body) for _ in range(3)]
    assert all(a is None or a[0] == decode_worker.OK for a in answers), answers
    assert answers[-1] is not None
    assert not set(processes.wait_ready()) & set(pids)
    while_decoding = processes.wait_ready()[0]
    os.kill(while_decoding, signal.SIGSTOP)  # stopped: it takes the next request and hangs

    async def killed_mid_request():
        decoding = asyncio.ensure_future(processes.decode_predict(body * 0 + body, SPECS, LIMIT))
        other = asyncio.ensure_future(processes.decode_predict(body, SPECS, LIMIT))
        done, _ = await asyncio.wait([decoding, other], return_when=asyncio.FIRST_COMPLETED)
        os.kill(while_decoding, signal.SIGKILL)
        return [await decoding, await other]

    results = asyncio.run(killed_mid_request())
    assert sorted(r is None for r in results) == [False, True], results


def test_a_request_that_gives_up_frees_its_process() -> None:
    """A deadline cancels the request: its process is killed and replaced, not left busy."""
    processes = DecodeProcesses(1)
    try:
        _give_up_on(processes)
    finally:
        processes.close()


def _give_up_on(processes: DecodeProcesses) -> None:
    pid = processes.wait_ready()[0]
    body = json.dumps({"instances": [{"a": [i, 1], "b": i, "s": "x"} for i in range(200000)]})

    async def give_up():
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(processes.decode_predict(body.encode(), SPECS, LIMIT), 0.05)

    asyncio.run(give_up())
    deadline = time.monotonic() + 30
    while Path(f"/proc/{pid}").exists() and _state(pid) != "Z":
        assert time.monotonic() < deadline, "the process is still decoding"
        time.sleep(0.05)
    answer = _decode(processes, json.dumps(BODIES["columnar"]).encode())
    assert answer is not None and answer[0] == decode_worker.OK
    assert pid not in processes.wait_ready()


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


# -- real servers, with and without decode processes --------------------------------


@pytest.fixture(scope="module")
def two_servers(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("decode-models")
    export_linear(root / "linear", 1, 2.0, 1.0)
    export_multi_input(root / "multi", 1)
    config = root / "models.config"
    config.write_text(
        "model_config_list {"
        f' config {{ name: "linear" base_path: "{root}/linear" model_platform: "tensorflow" }}'
        f' config {{ name: "multi" base_path: "{root}/multi" model_platform: "tensorflow" }}'
        " }"
    )
    apart = ServerProcess(f"--model_config_file={config}")
    here = ServerProcess(f"--model_config_file={config}", "--rest_decode_processes=0")
    with apart, here:
        apart.wait_ready()
        here.wait_ready()
        yield apart, here


def _children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        found.update(int(c) for c in (task / "children").read_text().split())
    return found


def _decode_workers(server: ServerProcess) -> set[int]:
    assert server.proc is not None
    return {
        c
        for c in _children(server.proc.pid)
        if decode_worker.__name__.encode() in Path(f"/proc/{c}/cmdline").read_bytes()
    }


LARGE = 20000  # rows: bodies of 100s of KiB, over the 64 KiB the server decodes itself

SERVER_BODIES = {
    "linear: numeric rows": ("linear", {"instances": [i / 4 for i in range(LARGE)]}),
    "linear: columnar": ("linear", {"inputs": {"x": [i / 4 for i in range(LARGE)]}}),
    "multi: objects": (
        "multi",
        {"instances": [{"a": [i, 1], "b": i, "s": f"r{i}"} for i in range(LARGE // 4)]},
    ),
    "linear: a string among floats": ("linear", {"instances": [1.0] * LARGE + ["x"]}),
    "linear: wrong input name": ("linear", {"inputs": {"y": [1.0] * LARGE}}),
    "linear: unknown signature": (
        "linear",
        {"signature_name": "nope", "instances": [1.0] * LARGE},
    ),
    "no such model": ("absent", {"instances": [1.0] * LARGE}),
    "not JSON": ("linear", "[" * 2 + "1.0," * LARGE),
    "too deep": ("multi", {"instances": [{"a": [[[[1]]]], "b": 1, "s": "q" * LARGE * 8}]}),
}


@pytest.mark.parametrize("case", sorted(SERVER_BODIES))
def test_a_server_answers_large_bodies_as_without_decode_processes(two_servers, case) -> None:
    apart, here = two_servers
    model, doc = SERVER_BODIES[case]
    body = doc.encode() if isinstance(doc, str) else json.dumps(doc).encode()
    assert len(body) > 64 * 1024
    answers = [
        requests.post(f"{s.rest}/v1/models/{model}:predict", data=body, timeout=60)
        for s in (apart, here)
    ]
    assert answers[0].status_code == answers[1].status_code, [a.text[:300] for a in answers]
    assert answers[0].content == answers[1].content
    if case.endswith(("rows", "columnar", "objects")):
        assert answers[0].status_code == 200
    else:
        assert answers[0].status_code in (400, 404), answers[0].text[:300]


def test_a_server_uses_its_decode_processes_and_replaces_a_dead_one(two_servers) -> None:
    apart, here = two_servers
    assert _decode_workers(here) == set()
    workers = _decode_workers(apart)
    assert len(workers) == max(1, len(os.sched_getaffinity(0)))
    before = {w: _cpu_ticks(w) for w in workers}
    body = json.dumps({"instances": [i / 4 for i in range(LARGE * 10)]}).encode()
    url = f"{apart.rest}/v1/models/linear:predict"
    for _ in range(4):
        assert requests.post(url, data=body, timeout=60).status_code == 200
    assert sum(_cpu_ticks(w) for w in workers) > sum(before.values())  # they did the work
    for worker in workers:
        os.kill(worker, signal.SIGKILL)
    # Concurrent requests take every process: each dead one is replaced when taken (a
    # round of requests that happened not to overlap may leave one for the next round).
    for _ in range(5):
        with ThreadPoolExecutor(len(workers)) as clients:
            answers = list(
                clients.map(lambda _: requests.post(url, data=body, timeout=60), range(8))
            )
        assert [a.status_code for a in answers] == [200] * len(answers)
        assert answers[0].json()["predictions"][:3] == [1.0, 1.5, 2.0]
        replaced = _decode_workers(apart)
        if len(replaced) == len(workers):
            break
    assert len(replaced) == len(workers) and not replaced & workers


def _cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime
