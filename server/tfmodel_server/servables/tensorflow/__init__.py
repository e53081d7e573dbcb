"""TensorFlow SavedModel servables (TF Serving's servables/tensorflow)."""
