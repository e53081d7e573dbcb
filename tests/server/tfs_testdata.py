"""TF Serving's `servables/tensorflow/testdata`, regenerated with TensorFlow.

The binaries TF Serving's server test suite loads are not in this repository;
these builders follow its generator scripts so the models have the same tensor
names, input shapes and signatures:

- `saved_model_half_plus_two_cpu` / `saved_model_half_plus_three`: the TF1 graph
  of `saved_model_half_plus_two.py` (x:0 is the identity of a parsed Example
  feature, static shape [-1,1]; signatures serving_default, regress_x_to_y,
  regress_x_to_y2, regress_x2_to_y3, classify_x_to_y; an asset file and a
  main_op assigning its name). half_plus_three is the same graph with b=3.
- `saved_model_half_plus_two_tf2_cpu`: the TF2 (tf.function) model whose
  signatures `saved_model_half_plus_two_tf2_2_versions_metadata.json` records
  (serving_default x f32[1] -> y; classify/regress on serialized Examples
  `[-1]`; x2 signatures on f32[1]; every method_name tensorflow/serving/predict).

- `saved_model_half_plus_two_tflite` / `..._tflite_with_sigdef`: TF Serving's
  own small model.tflite files, vendored in tests/server/testdata/tf_serving
  (README there: source commit and license), copied in.

Every version directory is `00000123`, as in TF Serving's testdata.
"""

from __future__ import annotations

import shutil
from pathlib import Path

VENDORED = Path(__file__).parent / "testdata" / "tf_serving"
VERSION_DIR = "00000123"
VERSION = 123

GOOD_MODEL_CONFIG_TEMPLATE = """model_config_list: {

  config: {
    name: "half_plus_two",
    base_path: "${TEST_HALF_PLUS_TWO_DIR}",
    model_platform: "tensorflow"
  },
  config: {
    name: "half_plus_three",
    base_path: "${TEST_HALF_PLUS_THREE_DIR}",
    model_platform: "tensorflow"
  }

}
"""

BAD_MODEL_CONFIG = "improperly formatted file"

MONITORING_CONFIG = """prometheus_config: {
  enable: true,
  path: "/monitoring/prometheus/metrics"
}
"""


def build_half_plus_two_tf1(export_dir: Path, b: float = 2.0) -> None:
    """`_generate_saved_model_for_half_plus_two(export_dir, device_type="cpu")`."""
    import tensorflow as tf

    v1 = tf.compat.v1
    builder = v1.saved_model.builder.SavedModelBuilder(str(export_dir))
    with v1.Session(graph=tf.Graph()) as sess:
        with tf.device("/cpu:0"):
            a = v1.Variable(0.5, name="a")
            b_var = v1.Variable(b, name="b")
            c = v1.Variable(3.0, name="c")
            # Shapeless: TF Serving's half_plus_two_model_metadata.json (what its
            # binary testdata holds) reports tf_example:0 with unknown rank; the
            # current script's shape=[None] postdates that binary.
            serialized_tf_example = v1.placeholder(tf.string, name="tf_example")
            # FixedLenFeature x [1] (required) and x2 [1] (default 0.0) through the
            # v1 ParseExample op, which tf.parse_example emitted when that binary was
            # made: its shape function gives [-1,1] from a shapeless input (the
            # V2 op that parse_example now uses would give unknown rank).
            _, _, _, dense = tf.raw_ops.ParseExample(
                serialized=serialized_tf_example,
                names=tf.constant([], tf.string),
                sparse_keys=[],
                dense_keys=[tf.constant("x"), tf.constant("x2")],
                dense_defaults=[tf.constant([], tf.float32), tf.constant([0.0], tf.float32)],
                sparse_types=[],
                dense_shapes=[[1], [1]],
            )
            tf_example = {"x": dense[0], "x2": dense[1]}
            x = tf.identity(tf_example["x"], name="x")
            y = tf.identity(tf.add(tf.multiply(a, x), b_var), name="y")
            y2 = tf.identity(tf.add(tf.multiply(a, x), c), name="y2")
            x2 = tf.identity(tf_example["x2"], name="x2")
            a2 = v1.Variable(0.5, name="a2")
            c2 = v1.Variable(3.0, name="c2")
            y3 = tf.identity(tf.add(tf.multiply(a2, x2), c2), name="y3")

        # The generator writes foo.txt under /tmp/original; any scratch dir outside
        # the model base path does (the builder copies it into assets/).
        assign_filename_op = _asset_file(
            export_dir.parent.parent / f".assets-{export_dir.parent.name}"
        )

        utils = v1.saved_model.utils
        sig = v1.saved_model.signature_def_utils
        consts = v1.saved_model.signature_constants

        def regression(inp, out):
            return sig.build_signature_def(
                {consts.REGRESS_INPUTS: utils.build_tensor_info(inp)},
                {consts.REGRESS_OUTPUTS: utils.build_tensor_info(out)},
                consts.REGRESS_METHOD_NAME,
            )

        classification = sig.build_signature_def(
            {consts.CLASSIFY_INPUTS: utils.build_tensor_info(serialized_tf_example)},
            {consts.CLASSIFY_OUTPUT_SCORES: utils.build_tensor_info(y)},
            consts.CLASSIFY_METHOD_NAME,
        )
        predict = sig.build_signature_def(
            {"x": utils.build_tensor_info(x)},
            {"y": utils.build_tensor_info(y)},
            consts.PREDICT_METHOD_NAME,
        )
        signature_def_map = {
            "regress_x_to_y": regression(serialized_tf_example, y),
            "regress_x_to_y2": regression(serialized_tf_example, y2),
            "regress_x2_to_y3": regression(x2, y3),
            "classify_x_to_y": classification,
            consts.DEFAULT_SERVING_SIGNATURE_DEF_KEY: predict,
        }
        sess.run(v1.global_variables_initializer())
        builder.add_meta_graph_and_variables(
            sess,
            [v1.saved_model.tag_constants.SERVING],
            signature_def_map=signature_def_map,
            assets_collection=v1.get_collection(v1.GraphKeys.ASSET_FILEPATHS),
            main_op=tf.group(assign_filename_op),
        )
    builder.save(False)


def _asset_file(assets_dir: Path):
    """The generator's foo.txt asset and the variable its main_op assigns."""
    import tensorflow as tf

    v1 = tf.compat.v1
    assets_dir.mkdir(parents=True, exist_ok=True)
    path = assets_dir / "foo.txt"
    path.write_text("asset-file-contents")
    v1.add_to_collection(v1.GraphKeys.ASSET_FILEPATHS, tf.constant(str(path)))
    filename_tensor = v1.Variable(
        "foo.txt", name="filename_tensor", trainable=False, collections=[]
    )
    return filename_tensor.assign("foo.txt")


def build_half_plus_two_tf2(export_dir: Path) -> None:
    """The TF2 half_plus_two: y = 0.5x + 2, y2 = 0.5x + 3, y3 = 0.5x2 + 3."""
    import tensorflow as tf

    class HalfPlusTwo(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = tf.Variable(0.5, name="a")
            self.b = tf.Variable(2.0, name="b")
            self.c = tf.Variable(3.0, name="c")

        def _parse(self, serialized):
            features = tf.io.parse_example(
                serialized, {"x": tf.io.FixedLenFeature([1], dtype=tf.float32)}
            )
            return features["x"]

        @tf.function(input_signature=[tf.TensorSpec([1], tf.float32, name="x")])
        def predict(self, x):
            return {"y": self.a * x + self.b}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
        def classify_x_to_y(self, inputs):
            return {"scores": self.a * self._parse(inputs) + self.b}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
        def regress_x_to_y(self, inputs):
            return {"outputs": self.a * self._parse(inputs) + self.b}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
        def regress_x_to_y2(self, inputs):
            return {"outputs": self.a * self._parse(inputs) + self.c}

        @tf.function(input_signature=[tf.TensorSpec([1], tf.float32, name="inputs")])
        def regress_x2_to_y3(self, inputs):
            return {"outputs": self.a * inputs + self.c}

        @tf.function(input_signature=[tf.TensorSpec([1], tf.float32, name="inputs")])
        def classify_x2_to_y3(self, inputs):
            return {"scores": self.a * inputs + self.c}

    module = HalfPlusTwo()
    tf.saved_model.save(
        module,
        str(export_dir),
        signatures={
            "serving_default": module.predict,
            "classify_x_to_y": module.classify_x_to_y,
            "regress_x_to_y": module.regress_x_to_y,
            "regress_x_to_y2": module.regress_x_to_y2,
            "regress_x2_to_y3": module.regress_x2_to_y3,
            "classify_x2_to_y3": module.classify_x2_to_y3,
        },
    )


class TfsTestData:
    """The testdata directory of one test session (built once, read-only after)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.half_plus_two = root / "saved_model_half_plus_two_cpu"
        self.half_plus_three = root / "saved_model_half_plus_three"
        self.half_plus_two_tf2 = root / "saved_model_half_plus_two_tf2_cpu"
        self.bad_model_config = root / "bad_model_config.txt"
        self.monitoring_config = root / "monitoring_config.txt"
        self.good_model_config = root / "good_model_config.conf"
        self.tflite = root / "saved_model_half_plus_two_tflite"
        self.tflite_with_sigdef = root / "saved_model_half_plus_two_tflite_with_sigdef"

    def build(self) -> TfsTestData:
        build_half_plus_two_tf1(self.half_plus_two / VERSION_DIR)
        build_half_plus_two_tf1(self.half_plus_three / VERSION_DIR, b=3.0)
        build_half_plus_two_tf2(self.half_plus_two_tf2 / VERSION_DIR)
        for vendored in (self.tflite, self.tflite_with_sigdef):
            shutil.copytree(VENDORED / vendored.name, vendored)
        self.bad_model_config.write_text(BAD_MODEL_CONFIG)
        self.monitoring_config.write_text(MONITORING_CONFIG)
        self.good_model_config.write_text(
            GOOD_MODEL_CONFIG_TEMPLATE.replace(
                "${TEST_HALF_PLUS_TWO_DIR}", str(self.half_plus_two)
            ).replace("${TEST_HALF_PLUS_THREE_DIR}", str(self.half_plus_three))
        )
        return self
