"""GetModelMetadata, shared by the gRPC and REST surfaces (get_model_metadata_impl.cc)."""

from __future__ import annotations

from google.protobuf import any_pb2
from tensorflow_serving.apis import get_model_metadata_pb2

from tfmodel_server.errors import invalid_argument
from tfmodel_server.inference.service import InferenceService, model_ref_from_spec


def model_metadata_response(
    service: InferenceService, request: get_model_metadata_pb2.GetModelMetadataRequest
) -> get_model_metadata_pb2.GetModelMetadataResponse:
    """Only the "signature_def" metadata field exists."""
    if not request.metadata_field:
        raise invalid_argument("GetModelMetadataRequest must specify at least one metadata_field")
    for field in request.metadata_field:
        if field != "signature_def":
            raise invalid_argument(f"Metadata field {field} is not supported")
    ref = model_ref_from_spec(request.model_spec)
    response = get_model_metadata_pb2.GetModelMetadataResponse()
    with service.manager.get_handle(ref.name, ref.version, ref.label) as handle:
        packed = any_pb2.Any()
        packed.Pack(handle.servable.signature_def_map())
        response.metadata["signature_def"].CopyFrom(packed)
        response.model_spec.name = handle.servable.name
        response.model_spec.version.value = handle.servable.version
    return response
