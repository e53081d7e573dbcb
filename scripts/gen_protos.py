"""Regenerate server/tfmodel_server/protos/*_pb2.py from TF Serving's own .proto files.

The tensorflow-serving-api wheel ships apis/ and config/ only; the three messages the
--platform_config_file and --thread_pool_factory_config_file files hold
(SessionBundleConfig, SavedModelBundleSourceAdapterConfig, ThreadPoolFactoryConfig) are
generated here from the .proto files copied unmodified into protos/upstream/ (TF Serving
commit in protos/upstream/SOURCE). Their imports (tensorflow/core/protobuf/config.proto,
named_tensor.proto, google/protobuf/*.proto) are given to protoc as the descriptors the
installed tensorflow wheel was built with, so the generated code links to TF's own classes.

    pip install --target /tmp/grpctools 'grpcio-tools>=1.66'
    PYTHONPATH=/tmp/grpctools:$PYTHONPATH python scripts/gen_protos.py
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "server", "tfmodel_server")
PROTOS = os.path.join(ROOT, "protos")
UPSTREAM = os.path.join(PROTOS, "upstream")
FILES = [
    "tensorflow_serving/servables/tensorflow/session_bundle_config.proto",
    "tensorflow_serving/servables/tensorflow/saved_model_bundle_source_adapter.proto",
    "tensorflow_serving/servables/tensorflow/thread_pool_factory_config.proto",
]


def _descriptor_set() -> bytes:
    """A FileDescriptorSet of TF's config.proto and named_tensor.proto and their imports."""
    from google.protobuf import any_pb2, descriptor_pb2, wrappers_pb2
    from tensorflow.core.protobuf import config_pb2, named_tensor_pb2

    seen: set[str] = set()
    out = descriptor_pb2.FileDescriptorSet()

    def add(file_descriptor) -> None:
        if file_descriptor.name in seen:
            return
        for dep in file_descriptor.dependencies:
            add(dep)
        seen.add(file_descriptor.name)
        proto = out.file.add()
        file_descriptor.CopyToProto(proto)

    add(wrappers_pb2.DESCRIPTOR)
    add(any_pb2.DESCRIPTOR)
    add(config_pb2.DESCRIPTOR)
    add(named_tensor_pb2.DESCRIPTOR)
    return out.SerializeToString()


def main() -> None:
    from grpc_tools import protoc

    with tempfile.TemporaryDirectory() as tmp:
        deps = os.path.join(tmp, "deps.pb")
        with open(deps, "wb") as f:
            f.write(_descriptor_set())
        code = protoc.main(
            ["protoc", f"-I{UPSTREAM}", f"--descriptor_set_in={deps}", f"--python_out={tmp}"]
            + FILES
        )
        if code != 0:
            sys.exit(code)
        for name in FILES:
            module = os.path.basename(name).replace(".proto", "_pb2.py")
            with open(os.path.join(tmp, os.path.dirname(name), module), encoding="utf-8") as f:
                text = f.read()
            # The generated modules sit flat in tfmodel_server.protos, not in TF Serving's
            # package (the wheel owns that name).
            text = re.sub(
                r"^from tensorflow_serving\.servables\.tensorflow import ",
                "from tfmodel_server.protos import ",
                text,
                flags=re.M,
            )
            with open(os.path.join(PROTOS, module), "w", encoding="utf-8") as f:
                f.write(text)
            print("wrote", os.path.join("server/tfmodel_server/protos", module))
    subprocess.run([sys.executable, "-m", "ruff", "format", "--quiet", PROTOS], check=False)


if __name__ == "__main__":
    main()
