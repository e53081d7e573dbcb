"""`tfmodel-operator` command line (the running operator is covered by test_operator.py)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from tfmodel_operator.main import main, parse_args


def test_defaults_watch_all_namespaces_with_liveness():
    args = parse_args([])
    assert args.namespace == [] and not args.all_namespaces
    assert args.liveness == "http://0.0.0.0:8080/healthz"


def test_namespaces_repeat():
    assert parse_args(["-n", "a", "--namespace", "b"]).namespace == ["a", "b"]


def test_namespace_and_all_namespaces_exclude_each_other(capsys):
    with pytest.raises(SystemExit) as exc:
        parse_args(["--namespace", "a", "--all-namespaces"])
    assert exc.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_non_positive_status_interval_is_rejected(capsys):
    assert main(["--status-interval", "0"]) == 2
    assert "--status-interval must be positive" in capsys.readouterr().err


def test_fewer_than_one_worker_is_rejected(capsys):
    assert main(["--workers", "0"]) == 2
    assert "--workers must be at least 1" in capsys.readouterr().err
    assert parse_args([]).workers == 16


def test_console_script_help():
    done = subprocess.run(
        [sys.executable, "-m", "tfmodel_operator.main", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0
    assert "--namespace" in done.stdout and "--liveness" in done.stdout
