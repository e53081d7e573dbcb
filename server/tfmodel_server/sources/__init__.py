"""Sources: discover servable versions (TF Serving's sources/storage_path)."""
