"""Helpers for tests that need real servers: processes on loopback ports and a generated video body."""
