"""The HTTP side shared by the API and webhook functions: problem details, caller identity, OpenAPI."""
