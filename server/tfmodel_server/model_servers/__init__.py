"""Model server core: config files and model status (TF Serving's model_servers)."""
