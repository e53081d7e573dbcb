"""Servables: loaders and servable implementations."""
