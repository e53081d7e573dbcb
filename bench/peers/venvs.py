"""Virtualenvs for the peer servers, made on first use and reused (pip's cache keeps it fast).

Each venv gets the peer's pinned server plus the same TensorFlow version as this environment,
so every server runs the model on the same TF build.
"""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from pathlib import Path

VENV_ROOT = Path.home() / ".cache" / "tfmodel" / "bench-venvs"
INSTALL_TIMEOUT_SECONDS = 1200

# MLServer 1.7 breaks with uvloop 0.22 (its event-loop policy hook); hold uvloop back.
PINS: dict[str, tuple[str, ...]] = {
    "mlserver": ("mlserver==1.7.1", "uvloop<0.22"),
    "kserve": ("kserve==0.21.0",),
}


def tensorflow_pin() -> str:
    return f"tensorflow=={importlib.metadata.version('tensorflow')}"


def requirements(name: str) -> list[str]:
    return [*PINS[name], tensorflow_pin()]


def ensure_venv(name: str) -> Path:
    """The venv's python, creating or updating the venv when its requirements changed."""
    venv = VENV_ROOT / name
    python = venv / "bin" / "python"
    marker = venv / ".bench-requirements"
    wanted = "\n".join(requirements(name))
    if python.exists() and marker.exists() and marker.read_text() == wanted:
        return python
    VENV_ROOT.mkdir(parents=True, exist_ok=True)
    print(f"  making venv {venv}: pip install {' '.join(requirements(name))}", flush=True)
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", *requirements(name)],
        check=True,
        timeout=INSTALL_TIMEOUT_SECONDS,
    )
    marker.write_text(wanted)
    return python


def version_of(python: Path, package: str) -> str:
    out = subprocess.run(
        [str(python), "-c", f"import importlib.metadata as m; print(m.version('{package}'))"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return out.stdout.strip() or "unknown"
