"""template.yaml for the local stack and the tests: read as CloudFormation would (loader) and made in moto
(provisioner). The names below are what callers import from devstack.cloudformation."""

from devstack.cloudformation.loader import (
    ACCOUNT_ID,
    REGION,
    TEMPLATE_PATH,
    FunctionEvent,
    FunctionSpec,
    Stack,
    expand_language_extensions,
    load_template,
)
from devstack.cloudformation.provisioner import provision

__all__ = [
    "ACCOUNT_ID",
    "REGION",
    "TEMPLATE_PATH",
    "FunctionEvent",
    "FunctionSpec",
    "Stack",
    "expand_language_extensions",
    "load_template",
    "provision",
]
