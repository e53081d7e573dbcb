"""tfmodel-operator: reconciles TFModel resources (serving.tfmodel.io/v1alpha1) with kopf.

No TensorFlow here: the operator only writes the server's flags and TF Serving text configs.

    spec.py          TFModel spec -> typed dataclasses (same defaults as the CRD)
    textproto.py     tiny protobuf text-format writer
    model_config.py  models.config (ModelServerConfig) and batching.config (BatchingParameters)
    configmap.py / deployment.py / services.py / scaling.py   pure builders, one child each
                     (scaling.py also: the replicas hand-over when autoscaling is switched on)
    names.py         child names, labels, the name rules the CRD enforces
    ownership.py     which live objects this TFModel may write (controller ownerReference UID)
    applied.py       what was last applied to each child, so unchanged children are not re-applied
    rollout.py       canary rollout state machine and the effective labels/split it serves (pure)
    promtext.py      per-version request/error/latency figures from the servers' Prometheus text
    children.py      build_children(): everything a TFModel owns, plus optional kinds to delete
    status.py        status + conditions from the Deployment and GET /v1/models reports (pure)
    probe.py         GET /v1/models (and Prometheus text while a rollout step runs) from each
                     running server pod, all at once under one deadline
    kubeapi.py       generic REST calls; server-side apply with field manager "tfmodel-operator"
    reconcile.py     one pass: apply the children it controls, report conflicts and rejected
                     applies, check storage, write status when it changed
    handlers.py      kopf create/update/resume/delete handlers and the status/drift timer
    main.py          `tfmodel-operator` (wraps kopf.run: liveness endpoint, namespace scoping)

Model, policy and label edits change only the ConfigMap (mounted as a directory, re-read by
the servers every pollIntervalSeconds); pod-level fields (image, resources, GPUs, flags,
batching) change the pod template and roll the Deployment.
"""
