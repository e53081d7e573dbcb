"""TF Serving messages the tensorflow-serving-api wheel does not ship.

The wheel carries only apis/ and config/ protos, not
servables/tensorflow/session_bundle_config.proto (BatchingParameters) nor
config/monitoring_config.proto (MonitoringConfig) nor config/ssl_config.proto
(SSLConfig). Each is declared here by
their official full names, field names, numbers and types, each in a private
descriptor pool (never clashing with another copy). Text format only needs
names, so any file TF Serving reads parses here the same way.
"""

from __future__ import annotations

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, wrappers_pb2

_FDP = descriptor_pb2.FieldDescriptorProto
_WRAPPERS_FILE = "google/protobuf/wrappers.proto"

# (name, number, wrapper type or scalar kind) as in session_bundle_config.proto.
_BATCHING_FIELDS: tuple[tuple[str, int, str], ...] = (
    ("max_batch_size", 1, "Int64Value"),
    ("batch_timeout_micros", 2, "Int64Value"),
    ("max_enqueued_batches", 3, "Int64Value"),
    ("num_batch_threads", 4, "Int64Value"),
    ("thread_pool_name", 5, "StringValue"),
    ("allowed_batch_sizes", 6, "repeated int64"),
    ("pad_variable_length_inputs", 7, "bool"),
    ("enable_large_batch_splitting", 8, "BoolValue"),
    ("max_execution_batch_size", 9, "Int64Value"),
)


def _message_class(file_proto: descriptor_pb2.FileDescriptorProto, full_name: str):
    pool = descriptor_pool.DescriptorPool()
    if _WRAPPERS_FILE in file_proto.dependency:
        pool.Add(
            descriptor_pb2.FileDescriptorProto.FromString(wrappers_pb2.DESCRIPTOR.serialized_pb)
        )
    pool.Add(file_proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(full_name))


def _batching_parameters_class():
    file_proto = descriptor_pb2.FileDescriptorProto(
        name="tensorflow_serving/servables/tensorflow/session_bundle_config.proto",
        package="tensorflow.serving",
        syntax="proto3",
        dependency=[_WRAPPERS_FILE],
    )
    message = file_proto.message_type.add(name="BatchingParameters")
    for name, number, kind in _BATCHING_FIELDS:
        field = message.field.add(name=name, number=number, label=_FDP.LABEL_OPTIONAL)
        if kind == "repeated int64":
            field.type = _FDP.TYPE_INT64
            field.label = _FDP.LABEL_REPEATED
        elif kind == "bool":
            field.type = _FDP.TYPE_BOOL
        else:
            field.type = _FDP.TYPE_MESSAGE
            field.type_name = f".google.protobuf.{kind}"
    return _message_class(file_proto, "tensorflow.serving.BatchingParameters")


def _monitoring_config_class():
    file_proto = descriptor_pb2.FileDescriptorProto(
        name="tensorflow_serving/config/monitoring_config.proto",
        package="tensorflow.serving",
        syntax="proto3",
    )
    prom = file_proto.message_type.add(name="PrometheusConfig")
    prom.field.add(name="enable", number=1, type=_FDP.TYPE_BOOL, label=_FDP.LABEL_OPTIONAL)
    prom.field.add(name="path", number=2, type=_FDP.TYPE_STRING, label=_FDP.LABEL_OPTIONAL)
    mon = file_proto.message_type.add(name="MonitoringConfig")
    mon.field.add(
        name="prometheus_config",
        number=1,
        type=_FDP.TYPE_MESSAGE,
        type_name=".tensorflow.serving.PrometheusConfig",
        label=_FDP.LABEL_OPTIONAL,
    )
    return _message_class(file_proto, "tensorflow.serving.MonitoringConfig")


BatchingParametersProto = _batching_parameters_class()
MonitoringConfigProto = _monitoring_config_class()


def _ssl_config_class():
    """config/ssl_config.proto: the file --ssl_config_file names."""
    file_proto = descriptor_pb2.FileDescriptorProto(
        name="tensorflow_serving/config/ssl_config.proto",
        package="tensorflow.serving",
        syntax="proto3",
    )
    ssl = file_proto.message_type.add(name="SSLConfig")
    for name, number, kind in (
        ("server_key", 1, _FDP.TYPE_STRING),
        ("server_cert", 2, _FDP.TYPE_STRING),
        ("custom_ca", 3, _FDP.TYPE_STRING),
        ("client_verify", 4, _FDP.TYPE_BOOL),
    ):
        ssl.field.add(name=name, number=number, type=kind, label=_FDP.LABEL_OPTIONAL)
    return _message_class(file_proto, "tensorflow.serving.SSLConfig")


SSLConfigProto = _ssl_config_class()
