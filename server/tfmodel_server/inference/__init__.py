"""Inference: runners (direct, batching) and the transport-independent service."""
