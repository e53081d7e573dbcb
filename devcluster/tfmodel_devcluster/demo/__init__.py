"""tfmodel's demos (`tfmodel-demo`): TF Serving's MNIST tutorial on scikit-learn's bundled digits.

The server walk-through (`make demo-server`, no cluster, no root):
  data.py           the digits, split once into train and held-out test
  export.py         mnist_saved_model.py: train a softmax classifier, export a SavedModel
  mnist_client.py   mnist_client.py: Predict requests (official stubs), the error rate
  walkthrough.py    export v1, serve it with tfmodel-server, query, export v2, hot swap, query

The cluster demo (`make demo`, root): the operator, a TFModel's pods and a canary rollout
on the embedded single-node cluster (tfmodel_devcluster.cluster):
  preflight.py      what the machine must have, each failure with what to do
  steps.py          the demo's steps on a running Cluster, no printing (tests/cluster/test_demo.py
                    runs them on the suite's session cluster, so the demo cannot rot)
  service_client.py the Predict clients of the TFModel's Service (official stubs), run inside
                    the node's network namespace where the Service's ClusterIP routes
  report.py         the summary table and the PNG of which version answered each second
  cluster_demo.py   the printed walk-through with its nine steps

cli.py is `tfmodel-demo export | client | walkthrough | cluster | down`. Its data dependency
(scikit-learn) and the plot's (matplotlib) come with the `demo` extra.
"""
