"""Helpers for tests that need real servers: a generated video body and its server (processes: devstack)."""
