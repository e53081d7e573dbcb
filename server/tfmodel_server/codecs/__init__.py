"""Codecs: TensorProto and REST JSON <-> numpy."""
