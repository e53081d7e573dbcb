"""constraints.txt (the lock, `make lock`) agrees with pyproject.toml: every dependency of every
extra is pinned there at a version its range allows, and the lock names no direct dependency
pyproject no longer has. Fails after a pyproject edit until `make lock` is run."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import tomllib
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
LOCK = ROOT / "constraints.txt"
PIN = re.compile(r"^([A-Za-z0-9._-]+)==([^\s;]+)")


def declared(pyproject: dict[str, Any]) -> dict[str, Requirement]:
    """Every requirement of the project and its extras (self-references like tfmodel[server]
    name extras that are listed anyway)."""
    project = canonicalize_name(pyproject["project"]["name"])
    groups = [pyproject["project"].get("dependencies", [])]
    groups += pyproject["project"].get("optional-dependencies", {}).values()
    reqs = (Requirement(line) for group in groups for line in group)
    return {canonicalize_name(r.name): r for r in reqs if canonicalize_name(r.name) != project}


def disagreements(pyproject: dict[str, Any], lock_text: str) -> list[str]:
    project = canonicalize_name(pyproject["project"]["name"])
    pins: dict[str, str] = {}
    direct: set[str] = set()  # what the lock pinned because pyproject asked ("via tfmodel")
    current = None
    for line in lock_text.splitlines():
        if match := PIN.match(line):
            current = canonicalize_name(match.group(1))
            pins[current] = match.group(2)
        elif current and re.search(rf"(via|#)\s+{project} \(pyproject\.toml\)", line):
            direct.add(current)
    wanted = declared(pyproject)
    problems = []
    for name, req in sorted(wanted.items()):
        if name not in pins:
            problems.append(f"{req} is not pinned")
        elif not req.specifier.contains(pins[name], prereleases=True):
            problems.append(f"{req}, but the lock pins {pins[name]}")
    problems += [f"{name} is pinned for {project}, which no longer asks for it"
                 for name in sorted(direct - set(wanted))]  # fmt: skip
    return problems


def test_the_lock_agrees_with_pyproject():
    problems = disagreements(PYPROJECT, LOCK.read_text())
    assert not problems, "run `make lock`:\n  " + "\n  ".join(problems)


def test_the_lock_says_how_to_regenerate_it():
    assert LOCK.read_text().splitlines()[1].strip("# ") == "make lock"


def test_disagreements_are_found():
    pyproject = {
        "project": {
            "name": "tfmodel",
            "optional-dependencies": {
                "operator": ["kubernetes>=36.0.2,<38", "kopf>=1.37,<2"],
                "demo": ["tfmodel[operator]", "scikit-learn>=1.4"],
            },
        }
    }
    lock = (
        "kubernetes==35.0.0\n    # via tfmodel (pyproject.toml)\n"
        "kopf==1.45.2\n    # via tfmodel (pyproject.toml)\n"
        "boto3==1.44.18\n    # via tfmodel (pyproject.toml)\n"
        "certifi==2026.1.1\n    # via kubernetes\n"
    )
    assert disagreements(pyproject, lock) == [
        "kubernetes<38,>=36.0.2, but the lock pins 35.0.0",
        "scikit-learn>=1.4 is not pinned",
        "boto3 is pinned for tfmodel, which no longer asks for it",
    ]
