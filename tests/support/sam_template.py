"""template.yaml as CloudFormation deploys it: its language extensions (Fn::ForEach) expanded by the SAM CLI's own
implementation, then transformed by aws-sam-translator, as CloudFormation's two transforms do.

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

# The SAM CLI's own Fn::ForEach expansion (its ForEachProcessor alone: its full pipeline would also resolve Refs to
# parameters with their defaults, which CloudFormation resolves with the deploy's values), then what CloudFormation
# makes of the expanded text: a Ref or GetAtt naming a resource by a plain Fn::Sub names it, a Fn::FindInMap of
# plain keys is its value. Then as samcli.lib.translate.sam_template_validator does it: local CodeUri/ContentUri
# become S3 URIs, no AWS calls.
_TRANSFORM = """
import json, sys
from samcli.lib.cfn_language_extensions.models import TemplateProcessingContext
from samcli.lib.cfn_language_extensions.processors import ForEachProcessor
from samcli.yamlhelper import yaml_parse
from samtranslator.parser.parser import Parser
from samtranslator.translator.translator import Translator

def plain(value):
    text = value.get("Fn::Sub") if isinstance(value, dict) and len(value) == 1 else None
    return text if isinstance(text, str) and "${" not in text else value

def simplified(value, mappings):
    if isinstance(value, list):
        return [simplified(item, mappings) for item in value]
    if not isinstance(value, dict):
        return value
    # Of the same mapping type: SAM's API deployment id hashes str() of what it copies from the template.
    value = type(value)((key, simplified(item, mappings)) for key, item in value.items())
    keys = value.get("Fn::FindInMap")
    if len(value) == 1 and isinstance(keys, list) and all(isinstance(key, str) for key in keys):
        return mappings[keys[0]][keys[1]][keys[2]]
    if set(value) == {"Ref"}:
        value["Ref"] = plain(value["Ref"])
    if set(value) == {"Fn::GetAtt"} and isinstance(value["Fn::GetAtt"], list):
        value["Fn::GetAtt"] = [plain(item) for item in value["Fn::GetAtt"]]
    return value

template = yaml_parse(open(sys.argv[1]).read())
context = TemplateProcessingContext(fragment=template)
ForEachProcessor().process_template(context)
template = context.fragment
for section in ("Resources", "Outputs", "Conditions"):
    if section in template:
        template[section] = simplified(template[section], template.get("Mappings", {}))
if sys.argv[2] == "expanded":
    json.dump(template, sys.stdout)
    sys.exit(0)
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
    """The template as CloudFormation deploys it (parsed once per path and run: do not change it)."""
    return _run(path, "transformed")


@cache
def expanded(path: Path = TEMPLATE_PATH) -> dict[str, Any]:
    """The template with its language extensions expanded by the SAM CLI, before the SAM transform."""
    return _run(path, "expanded")


def _run(path: Path, stage: str) -> dict[str, Any]:
    if not SAM_PYTHON.exists():
        raise SamEnvironmentMissing("the SAM CLI environment is missing: run `make .venv-sam/.installed`")
    environment = {"PATH": os.environ.get("PATH", ""), "AWS_DEFAULT_REGION": "us-east-1", "SAM_CLI_TELEMETRY": "0"}
    completed = subprocess.run(  # noqa: S603 - our own interpreter and script
        [str(SAM_PYTHON), "-c", _TRANSFORM, str(path), stage],
        capture_output=True,
        text=True,
        check=False,
        env=environment,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"transforming {path} failed:\n{completed.stderr}")
    document: dict[str, Any] = json.loads(completed.stdout)
    return document
