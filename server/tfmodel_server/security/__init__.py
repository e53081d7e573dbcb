"""TLS (--ssl_config_file) and request authentication (--auth_token_file)."""
