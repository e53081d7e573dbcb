"""spec.extraArgs: the operator's table of tfmodel-server flags is the server's own.

The operator never imports the server, so it keeps SERVER_FLAGS (server_flags.py); this test
derives the same table from the server's parser and fails when they differ. After changing
the server's flags, print the new table with `python -m tests.operator.test_server_flags`
and paste it into operator/tfmodel_operator/server_flags.py.
"""

from __future__ import annotations

import argparse

import pytest
from tfmodel_operator.server_flags import OPERATOR_FLAGS, SERVER_FLAGS, extra_arg_problems
from tfmodel_server.flags import build_parser, parse_args


def _kind(action: argparse.Action) -> str:
    if action.choices:
        return "choice:" + "|".join(str(c) for c in action.choices)
    if action.nargs == "?" and action.const is True:
        return "bool"
    if isinstance(action, argparse._StoreTrueAction):
        return "switch"
    if action.type is int:
        return "int"
    if action.type is float:
        return "float"
    return "str"


def server_table() -> dict[str, str]:
    """Flag name -> kind, from the server's real parser."""
    return {
        action.option_strings[0][2:]: _kind(action)
        for action in build_parser()._actions
        if action.option_strings and action.dest != "help"
    }


def test_the_operators_flag_table_is_the_servers():
    assert SERVER_FLAGS == server_table(), (
        "operator/tfmodel_operator/server_flags.py is out of date with the server's flags: "
        "regenerate it with `python -m tests.operator.test_server_flags`"
    )


def test_every_flag_the_operator_sets_is_a_server_flag():
    assert set(OPERATOR_FLAGS) <= set(server_table())


@pytest.mark.parametrize(
    "arg,message",
    [
        ("--rest_api_timeout_in_ms_x=5", "--rest_api_timeout_in_ms_x is not a tfmodel-server flag"),
        ("--rest_api_timout_in_ms=5", "did you mean --rest_api_timeout_in_ms?"),
        ("rest_api_timeout_in_ms=5", "is not a --flag or --flag=value"),
        ("--port=9000", "--port is set by the operator"),
        ("--ssl_config_file=/x", "--ssl_config_file is set by spec.security.tls"),
        ("--auth_token_file=/x", "spec.security.tokenSecret"),
        ("--rest_api_timeout_in_ms=soon", "--rest_api_timeout_in_ms takes an integer, not 'soon'"),
        ("--rest_api_timeout_in_ms", "--rest_api_timeout_in_ms needs a value"),
        ("--per_process_gpu_memory_fraction=half", "takes a number"),
        ("--enable_model_warmup=maybe", "--enable_model_warmup takes true or false"),
        ("--event_loop=tokio", "--event_loop takes one of asyncio, uvloop, not 'tokio'"),
        ("--version", "it prints the version and exits"),
    ],
)
def test_bad_extra_args_are_named(arg, message):
    problems = extra_arg_problems([arg])
    assert len(problems) == 1 and message in problems[0], problems


def test_good_extra_args_pass_and_the_server_takes_them():
    good = [
        "--rest_api_timeout_in_ms=5000",
        "--enable_model_warmup=false",
        "--enable_grpc_healthcheck_service",
        "--event_loop=asyncio",
        "--per_process_gpu_memory_fraction=0.5",
        "--saved_model_tags=serve,gpu",
        "--max_inflight_requests=64",
    ]
    assert extra_arg_problems(good) == []
    options = parse_args(["--model_config_file=/etc/tfmodel/models.config", *good])
    assert options.rest_api_timeout_in_ms == 5000 and options.enable_model_warmup is False
    assert options.event_loop == "asyncio" and options.max_inflight_requests == 64
    assert extra_arg_problems(["--workers=2", "--workers=3"]) == [
        "extraArgs: --workers is given twice"
    ]


if __name__ == "__main__":
    for name, kind in sorted(server_table().items()):
        print(f'    "{name}": "{kind}",')
