"""Page cache a loaded model leaves charged to the server's memory cgroup, with
--flush_filesystem_caches true (the default, as TF Serving) and false.

Starts a real tfmodel-server in a memory cgroup of its own per setting, serving one
SavedModel with a 16 MiB checkpoint read from cold cache, and reports the cgroup's
page cache (memory.stat file/cache) once it serves, and how much of it dropping the
version directory's pages afterwards releases (= what the load left behind).

    python -m bench.page_cache        (root: creates cgroups)
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from tfmodel_server.sources.page_cache import drop_page_cache

from tests.server.memcgroup import MemoryCgroup
from tests.server.serverproc import ServerProcess
from tests.server.test_flush_filesystem_caches import _BIG_MODEL, _cgroup_page_cache_bytes


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="tfmodel-page-cache-"))
    try:
        version = root / "big" / "1"
        subprocess.run([sys.executable, "-c", _BIG_MODEL, str(version)], check=True)
        for flush in ("true", "false"):
            drop_page_cache([str(version)])  # cold: the server's load reads it in
            with MemoryCgroup(4 << 30) as cgroup:
                with ServerProcess(
                    f"--model_base_path={root / 'big'}",
                    "--model_name=big",
                    f"--flush_filesystem_caches={flush}",
                    preexec_fn=cgroup.enter,
                ) as server:
                    server.wait_ready()
                    held = _cgroup_page_cache_bytes(cgroup)
                    drop_page_cache([str(version)])
                    left = held - _cgroup_page_cache_bytes(cgroup)
            print(
                f"--flush_filesystem_caches={flush}: page cache charged to the server's cgroup "
                f"{held / 2**20:.1f} MiB, of which the model's files {left / 2**20:.1f} MiB",
                flush=True,
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
