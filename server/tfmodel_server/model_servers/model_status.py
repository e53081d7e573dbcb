"""GetModelStatus responses (get_model_status_impl.cc), shared by gRPC and REST."""

from __future__ import annotations

from google.protobuf import json_format
from tensorflow_serving.apis import get_model_status_pb2

from tfmodel_server.core.harness import VersionStatus
from tfmodel_server.core.manager import ServableManager
from tfmodel_server.inference.service import ModelRef

_State = get_model_status_pb2.ModelVersionStatus.State


def fill_version_status(
    target: get_model_status_pb2.ModelVersionStatus, status: VersionStatus
) -> None:
    target.version = status.version
    target.state = _State.Value(status.state)
    # grpc.StatusCode values are (int, name); the ints are tensorflow.error.Code's.
    target.status.error_code = status.error_code.value[0]
    target.status.error_message = status.error_message


def status_response(statuses: list[VersionStatus]) -> get_model_status_pb2.GetModelStatusResponse:
    response = get_model_status_pb2.GetModelStatusResponse()
    for status in statuses:
        fill_version_status(response.model_version_status.add(), status)
    return response


def status_json(response: get_model_status_pb2.GetModelStatusResponse) -> dict:
    """The REST form: {"model_version_status": [{"version": "1", "state": ..., "status": ...}]}."""
    return json_format.MessageToDict(
        response, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


def model_status_response(
    manager: ServableManager, ref: ModelRef
) -> get_model_status_pb2.GetModelStatusResponse:
    version = ref.version
    if ref.label is not None:
        with manager.get_handle(ref.name, label=ref.label) as handle:
            version = handle.version
    return status_response(manager.model_status(ref.name, version))
