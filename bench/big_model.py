"""A SavedModel with MEGABYTES of float32 variables and a cheap signature.

The load (restoring the variables) is what costs; a predict reads one element:
`y = x + w[0]`, input "x" float32 [None], output "y". Built once per size into
a template directory, then copied for each version (as tests/server/savedmodels.py).
"""

from __future__ import annotations

import shutil
from pathlib import Path


def build(path: Path, megabytes: int) -> Path:
    """Export the model into `path` (which must not exist)."""
    import tensorflow as tf

    v1 = tf.compat.v1
    graph = tf.Graph()
    elements = megabytes * (1 << 20) // 4
    # Shards of 64 MB: one variable of 512 MB would need a single 2 GB-safe proto path.
    shard = 16 << 20
    with graph.as_default():
        x = v1.placeholder(tf.float32, shape=[None], name="x")
        weights = []
        for i in range(max(1, (elements + shard - 1) // shard)):
            size = min(shard, elements - i * shard)
            weights.append(
                v1.get_variable(
                    f"w{i}",
                    shape=[size],
                    dtype=tf.float32,
                    initializer=v1.random_uniform_initializer(),
                )
            )
        y = tf.add(x, weights[0][0], name="y")
        utils = v1.saved_model.utils
        signature = v1.saved_model.signature_def_utils.build_signature_def(
            inputs={"x": utils.build_tensor_info(x)},
            outputs={"y": utils.build_tensor_info(y)},
            method_name=v1.saved_model.signature_constants.PREDICT_METHOD_NAME,
        )
        with v1.Session(graph=graph) as session:
            session.run(v1.global_variables_initializer())
            builder = v1.saved_model.Builder(str(path))
            builder.add_meta_graph_and_variables(
                session, ["serve"], signature_def_map={"serving_default": signature}
            )
            builder.save()
    return path


def template(root: Path, megabytes: int) -> Path:
    path = root / f"big-{megabytes}mb"
    if not (path / "saved_model.pb").exists():
        shutil.rmtree(path, ignore_errors=True)
        build(path, megabytes)
    return path


def copy_version(template_path: Path, base: Path, version: int) -> Path:
    """Copy beside `base` and rename in, as a pipeline publishes a version."""
    staging = base.parent / f".{base.name}-staging-{version}"
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(template_path, staging)
    target = base / str(version)
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target
