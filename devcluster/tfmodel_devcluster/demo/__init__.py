"""`make demo`: the whole product on the embedded single-node cluster (tests/cluster).

preflight.py  what the machine must have, each failure with what to do
steps.py      the demo's steps on a running Cluster, no printing (tests/cluster/test_demo.py
              runs them on the suite's session cluster, so the demo cannot rot)
client.py     the Predict clients (official tensorflow-serving-api stubs), run inside the
              node's network namespace where the Service's ClusterIP routes
report.py     the summary table and the PNG of which version answered each second
__main__.py   the printed walk-through: `python -m tests.cluster.demo [--keep]`
"""
