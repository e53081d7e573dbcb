"""API surfaces: gRPC and REST."""
