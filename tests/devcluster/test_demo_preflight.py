"""`make demo`'s machine checks: each bad environment is a clear message, never a trace."""

from __future__ import annotations

import socket
from collections import namedtuple
from pathlib import Path

import pytest
from tfmodel_devcluster import host
from tfmodel_devcluster.demo import cli, preflight
from tfmodel_devcluster.demo.preflight import DemoEnvError


def test_not_root_says_sudo_and_demo_server(monkeypatch):
    monkeypatch.setattr(preflight.os, "geteuid", lambda: 1000)
    with pytest.raises(DemoEnvError, match="sudo make demo") as err:
        preflight.check_root()
    assert "make demo-server" in str(err.value)


def test_no_cgroups(tmp_path: Path):
    with pytest.raises(DemoEnvError, match="no cgroup file system"):
        preflight.check_cgroups(tmp_path)


def test_port_in_use_names_demo_down_and_another_port():
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(DemoEnvError, match=f"port {port} .* in use") as err:
            preflight.check_port(port)
    assert "make demo-down" in str(err.value) and "DEMO_API_PORT" in str(err.value)


def test_not_enough_disk(monkeypatch):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(preflight.shutil, "disk_usage", lambda _p: usage(0, 0, 2 * 1024**3))
    with pytest.raises(DemoEnvError, match="2.0 GiB free .* about 15 GiB") as err:
        preflight.check_disk(cold=True)
    assert "TFMODEL_CACHE" in str(err.value)


def test_main_prints_the_message_and_exits_2(monkeypatch, capsys, tmp_path: Path):
    def not_root() -> None:
        raise DemoEnvError("needs root")

    monkeypatch.setattr(preflight, "check_root", not_root)
    monkeypatch.setattr(host, "LOG_HOOK", None)  # run() sets it: restored after the test
    assert cli.main(["cluster", "--workdir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "cannot run the demo: needs root" in err and "Traceback" not in err
