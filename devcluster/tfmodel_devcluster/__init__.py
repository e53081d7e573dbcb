"""tfmodel's embedded single-node Kubernetes cluster (`tfmodel-cluster`, `make demo`).

cluster.py   the Cluster: build artifacts, node processes, networking, kubectl/helm access
cli.py       `tfmodel-cluster up | down | status`
forward.py   the 127.0.0.1 -> node namespace forwarder for the API server

It drives the server and the operator only through their images, console scripts and the
Helm chart; it never imports tfmodel_server or tfmodel_operator (pyproject import contracts).
"""
