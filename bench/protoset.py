"""A protoset for ghz, built from the descriptors inside the installed tensorflow-serving-api.

The wheels ship only *_pb2.py modules, so the FileDescriptorSet is assembled from their
compiled descriptors (the whole import closure, dependencies first) instead of .proto files.
"""

from __future__ import annotations

from google.protobuf import descriptor_pb2


def build_protoset(
    path: str, module: str = "tensorflow_serving.apis.prediction_service_pb2"
) -> None:
    """Write the FileDescriptorSet of `module` (a *_pb2 module) and its imports to `path`."""
    import importlib

    root = importlib.import_module(module)

    ordered: list = []
    seen: set[str] = set()

    def visit(file_descriptor) -> None:
        if file_descriptor.name in seen:
            return
        seen.add(file_descriptor.name)
        for dep in file_descriptor.dependencies:
            visit(dep)
        ordered.append(file_descriptor)

    visit(root.DESCRIPTOR)
    fds = descriptor_pb2.FileDescriptorSet()
    for fd in ordered:
        fds.file.add().ParseFromString(fd.serialized_pb)
    with open(path, "wb") as f:
        f.write(fds.SerializeToString())
