"""TF Serving messages generated from its .proto files (scripts/gen_protos.py).

The tensorflow-serving-api wheel does not ship them. Importing these modules
imports TensorFlow (they link to its ConfigProto).
"""
