"""Peer model servers for the benchmark: MLServer and KServe's Python server, each in its own
virtualenv (their dependency pins differ from tfmodel's), serving the same SavedModel.

- venvs.py            makes the virtualenvs under ~/.cache/tfmodel/bench-venvs
- mlserver_runtime.py an MLServer custom runtime (mlserver.MLModel) for a SavedModel signature
- kserve_model.py     a kserve.Model for the same, started as a script
- v2_request.py       run inside a peer venv: the v2 gRPC protoset and request for ghz
"""
