"""The manager wired as server.py wires it (real loader, real source), for tests.

`ServingStack` answers the manager's methods and ServerCore's `apply_config`,
so a test drives one object the way the server's layers drive theirs.
"""

from __future__ import annotations

from typing import Any

from tfmodel_server.core.manager import ManagerOptions, ServableManager
from tfmodel_server.model_servers.server_core import ServerCore
from tfmodel_server.servables.tensorflow.loader import SavedModelLoader
from tfmodel_server.sources.file_system import FileSystemSource


class ServingStack:
    def __init__(self, allow_version_labels_for_unavailable_models: bool = False, **options: Any):
        self.manager: ServableManager = ServableManager(
            SavedModelLoader(), FileSystemSource(), ManagerOptions(**options)
        )
        self.core = ServerCore(self.manager, allow_version_labels_for_unavailable_models)
        self.apply_config = self.core.apply_config

    def __getattr__(self, name: str) -> Any:
        return getattr(self.manager, name)
