"""template.yaml as CloudFormation receives it: the language extensions (Fn::ForEach) expanded by the SAM CLI's own
implementation, then transformed by aws-sam-translator, as `sam validate` and CloudFormation's transforms do.

The translator runs in .venv-sam, the SAM CLI's own environment: it pins a pydantic older than the layer's, so it
cannot share .venv (make unit builds both).
"""

import json
import os
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = ROOT / "template.yaml"
SAM_PYTHON = ROOT / ".venv-sam" / "bin" / "python"

# As samcli.lib.translate.sam_template_validator does it: language extensions first, local CodeUri/ContentUri
# become S3 URIs, no AWS calls.
_TRANSFORM = """
import json, sys
from samcli.lib.cfn_language_extensions.sam_integration import expand_language_extensions
from samcli.yamlhelper import yaml_parse
from samtranslator.parser.parser import Parser
from samtranslator.translator.translator import Translator
template = expand_language_extensions(yaml_parse(open(sys.argv[1]).read()), enabled=True).expanded_template
for resource in template["Resources"].values():
    properties = resource.get("Properties", {})
    for key in ("CodeUri", "ContentUri"):
        if isinstance(properties.get(key), str):
            properties[key] = "s3://bucket/" + properties[key]
translated = Translator(managed_policy_map=None, sam_parser=Parser(), plugins=[]).translate(
    sam_template=template, parameter_values={}, get_managed_policy_map=lambda: {})
json.dump(translated, sys.stdout)
"""


class SamEnvironmentMissing(RuntimeError):
    pass


@cache
def transformed(path: Path = TEMPLATE_PATH) -> dict[str, Any]:
    """The template as CloudFormation deploys it (its own document: parsed once per path and run)."""
    if not SAM_PYTHON.exists():
        raise SamEnvironmentMissing("the SAM CLI environment is missing: run `make .venv-sam/.installed`")
    environment = {"PATH": os.environ.get("PATH", ""), "AWS_DEFAULT_REGION": "us-east-1", "SAM_CLI_TELEMETRY": "0"}
    completed = subprocess.run(  # noqa: S603 - our own interpreter and script
        [str(SAM_PYTHON), "-c", _TRANSFORM, str(path)],
        capture_output=True,
        text=True,
        check=True,
        env=environment,
    )
    document: dict[str, Any] = json.loads(completed.stdout)
    return document
