"""The `tf_text_regression` model of TF Serving's test_tf_text, regenerated.

TF Serving's binary testdata is written by TF Text's
oss_scripts/model_server/save_models.py (tf_text_regression.README): a
tf.Module whose serving function takes x f32[1], runs a set of TF Text ops
(each a custom op the server must have registered to even load the graph)
as control dependencies, and returns y = x + 1. This builder follows it with
the ops that need no data files (the SentencePiece tokenizer needs the
script's test model, which is not published with the wheel). The version
directory is `01`, as upstream.

Run as `python -m tests.server.tf_text_model EXPORT_DIR` (it needs
tensorflow-text, the server image's extra).
"""

from __future__ import annotations

import sys
from pathlib import Path

VERSION_DIR = "01"


def build_tf_text_regression(export_dir: Path) -> None:
    import numpy as np
    import tensorflow as tf
    import tensorflow_text as text

    class TfTextOps(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            # Tracked by the module, so the SavedModel carries the table.
            self.vocab = tf.lookup.StaticHashTable(
                tf.lookup.KeyValueTensorInitializer(
                    ["hi"], [1], key_dtype=tf.string, value_dtype=tf.int64
                ),
                default_value=-1,
            )

        @tf.function
        def __call__(self, x):
            ops = []
            # Viterbi constrained sequence (ConstrainedSequence op).
            scores = np.array([[10.0, 12.0, 6.0, 4.0], [13.0, 12.0, 11.0, 10.0]], np.float32)
            weights = np.arange(25, dtype=np.float32).reshape(5, 5) - 12.0
            allowed = np.ones((5, 5), bool)
            allowed[2, 1] = allowed[4, 1] = False
            ops.append(
                text.viterbi_constrained_sequence(
                    np.stack([scores] * 3),
                    [2, 2, 2],
                    allowed_transitions=allowed,
                    transition_weights=weights,
                    use_log_space=True,
                    use_start_and_end_states=True,
                )
            )
            # Maximum spanning tree (MaxSpanningTree op).
            mst_scores = tf.constant(
                [[[0, 0, 0], [1, 0, 0], [1, 2, 0]], [[4, 3, 2], [0, 0, 2], [0, 0, 9]]], tf.int32
            )
            ops.append(text.max_spanning_tree(tf.constant([3, 2], tf.int32), mst_scores)[0])
            # Normalisation (CaseFoldUTF8, NormalizeUTF8).
            ops.append(text.normalize_utf8(text.case_fold_utf8(["Some Words"])))
            # Regex split (RegexSplitWithOffsets).
            ops.append(text.regex_split(["split me here"], r"\s").flat_values)
            # Sentence fragments (SentenceFragments).
            words = [["Hello", "there", "."], ["A", "B", "!"]]
            starts = tf.constant([[0, 6, 12], [0, 2, 4]], tf.int64)
            ends = tf.constant([[5, 11, 13], [1, 3, 5]], tf.int64)
            props = tf.ragged.constant([[0, 0, 0], [0, 0, 0]], dtype=tf.int64)
            ops.append(text.sentence_fragments(words, starts, ends, props)[0].flat_values)
            # Split-merge, unicode script, whitespace and wordpiece tokenizers.
            ops.append(
                text.SplitMergeTokenizer().tokenize(b"HelloWorld", [0, 1, 1, 1, 1, 0, 1, 1, 1, 1])
            )
            ops.append(text.UnicodeScriptTokenizer().tokenize(["mixed text"]).flat_values)
            ops.append(text.WhitespaceTokenizer().tokenize(["two words"]).flat_values)
            ops.append(text.WordpieceTokenizer(self.vocab).tokenize(["hi there"]).flat_values)
            # Word shape (regex-based, runs TF Text's Python op wrappers).
            ops.append(text.wordshape(["a-b"], text.WordShape.HAS_PUNCTUATION_DASH))
            with tf.control_dependencies(ops):
                return {"y": tf.add(x, [1])}

    module = TfTextOps()
    call = module.__call__.get_concrete_function(tf.TensorSpec([1], tf.float32, "x"))
    tf.saved_model.save(module, str(export_dir), call)


if __name__ == "__main__":
    build_tf_text_regression(Path(sys.argv[1]))
