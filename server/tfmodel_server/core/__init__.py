"""Core: the manager (aspired/loaded state, policy), independent of TensorFlow and the APIs."""
