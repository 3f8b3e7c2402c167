"""The template as CloudFormation deploys it stays what it was when template.yaml was de-duplicated (issue 12).

tests/template/transformed_snapshot.json is the normalised form (below) of the template transformed as
CloudFormation does it (tests/support/sam_template.py: Fn::ForEach expanded, then the SAM transform). The test
transforms today's template.yaml the same way and compares: every resource with its type, condition, policies and
properties; each role's effective IAM statements; parameters, conditions, rules and outputs.

Normalised, so that only what a deploy would do differently shows:
- a Fn::FindInMap whose arguments are all literal is replaced by its value (a table in Mappings is a way to write
  many similar resources once, and the value is what CloudFormation uses); mappings themselves are compared only
  for those of the snapshot (a new table read this way shows in the resources that read it);
- a role's inline policies, its customer managed policies (by Ref) and the AWS::IAM::Policy/ManagedPolicy resources
  naming it become one sorted list of its statements ("EffectiveStatements"): moving a statement between a role's
  own policy and a shared one, or reordering statements, changes nothing a principal may do; AWS managed policies
  stay named by ARN;
- a parameter's Default and AllowedValues are their text: CloudFormation passes every parameter value as a string
  (`Default: 120` and `Default: "120"` deploy the same).

Deliberate differences are listed in ADDED_RESOURCES (none so far): a resource there must exist now and is the only
kind missing from the snapshot that is allowed.

When template.yaml changes on purpose (a new resource, a new permission), regenerate the snapshot and review its
diff in the same commit:

    .venv/bin/python -m tests.unit.test_template_equivalence > tests/template/transformed_snapshot.json

(`... test_template_equivalence <path>` normalises another template file, e.g. an older template.yaml taken with
`git show <commit>:template.yaml`.)
"""

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.sam_template import SamEnvironmentMissing, transformed

SNAPSHOT_PATH = Path(__file__).resolve().parents[1] / "template" / "transformed_snapshot.json"
ADDED_RESOURCES: dict[str, str] = {}  # logical id -> type, of resources the de-duplication added on purpose
_COMPARED_SECTIONS = ("Parameters", "Conditions", "Rules", "Outputs")


def _static_find_in_map(value: Any, mappings: dict[str, Any]) -> Any:
    if isinstance(value, list):
        return [_static_find_in_map(item, mappings) for item in value]
    if not isinstance(value, dict):
        return value
    resolved = {key: _static_find_in_map(item, mappings) for key, item in value.items()}
    arguments = resolved.get("Fn::FindInMap")
    if len(resolved) == 1 and isinstance(arguments, list) and all(isinstance(a, str) for a in arguments):
        mapping, top, second = arguments
        return mappings[mapping][top][second]
    return resolved


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _statements(document: dict[str, Any]) -> list[Any]:
    return _as_list(document["Statement"])


def normalised(template: dict[str, Any]) -> dict[str, Any]:
    """The parts of a transformed template that decide what a deploy makes, in a form free of how it is written."""
    mappings = template.get("Mappings", {})
    resources: dict[str, Any] = _static_find_in_map(template["Resources"], mappings)
    for logical_id, resource in resources.items():
        if resource["Type"] != "AWS::IAM::Role":
            continue
        properties = resource["Properties"]
        statements = [s for policy in properties.pop("Policies", []) for s in _statements(policy["PolicyDocument"])]
        aws_managed = []
        for arn in properties.pop("ManagedPolicyArns", []):
            if isinstance(arn, dict) and set(arn) == {"Ref"}:
                statements += _statements(resources[arn["Ref"]]["Properties"]["PolicyDocument"])
            else:
                aws_managed.append(arn)
        for other in resources.values():
            attaches = {"Ref": logical_id} in other.get("Properties", {}).get("Roles", [])
            if other["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy") and attaches:
                statements += _statements(other["Properties"]["PolicyDocument"])
        properties["AwsManagedPolicyArns"] = sorted(aws_managed, key=lambda arn: json.dumps(arn, sort_keys=True))
        properties["EffectiveStatements"] = sorted(json.dumps(s, sort_keys=True) for s in statements)
    for resource in resources.values():
        if resource["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            # Compared through the roles it reaches; which roles it names is compared there too.
            resource["Properties"].pop("Roles", None)
    document = {"Resources": resources, "Mappings": mappings}
    document.update({section: template.get(section, {}) for section in _COMPARED_SECTIONS})
    parameters = {name: dict(parameter) for name, parameter in document["Parameters"].items()}
    for parameter in parameters.values():
        if "Default" in parameter:
            parameter["Default"] = str(parameter["Default"])
        if "AllowedValues" in parameter:
            parameter["AllowedValues"] = [str(value) for value in parameter["AllowedValues"]]
    document["Parameters"] = parameters
    normalised_document: dict[str, Any] = json.loads(json.dumps(document, sort_keys=True))
    return normalised_document


@pytest.fixture(scope="module")
def current() -> dict[str, Any]:
    try:
        return normalised(transformed())
    except SamEnvironmentMissing as missing:
        pytest.fail(str(missing))


@pytest.fixture(scope="module")
def snapshot() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(SNAPSHOT_PATH.read_text())
    return document


def test_the_template_makes_the_same_resources_as_before(current: dict[str, Any], snapshot: dict[str, Any]) -> None:
    before = {logical_id: r["Type"] for logical_id, r in snapshot["Resources"].items()}
    now = {logical_id: r["Type"] for logical_id, r in current["Resources"].items()}
    assert {k: v for k, v in now.items() if k not in before} == ADDED_RESOURCES
    assert {k: v for k, v in now.items() if k in before} == before


def test_every_resource_keeps_its_properties_and_attributes(current: dict[str, Any], snapshot: dict[str, Any]) -> None:
    differing = [
        logical_id
        for logical_id, resource in snapshot["Resources"].items()
        if current["Resources"].get(logical_id) != resource
    ]
    assert differing == []
    for logical_id, resource in snapshot["Resources"].items():  # the first difference, in full, when one fails
        assert current["Resources"].get(logical_id) == resource, logical_id


def test_every_role_keeps_its_effective_statements(current: dict[str, Any], snapshot: dict[str, Any]) -> None:
    roles = [logical_id for logical_id, r in snapshot["Resources"].items() if r["Type"] == "AWS::IAM::Role"]
    assert len(roles) >= 8  # one per function, the input reader, API Gateway's
    for role in roles:
        before = snapshot["Resources"][role]["Properties"]
        now = current["Resources"][role]["Properties"]
        assert now["EffectiveStatements"] == before["EffectiveStatements"], role
        assert now["AwsManagedPolicyArns"] == before["AwsManagedPolicyArns"], role


@pytest.mark.parametrize("section", _COMPARED_SECTIONS)
def test_parameters_conditions_rules_and_outputs_are_unchanged(
    current: dict[str, Any], snapshot: dict[str, Any], section: str
) -> None:
    assert current[section] == snapshot[section]


def test_the_mappings_of_before_are_still_there(current: dict[str, Any], snapshot: dict[str, Any]) -> None:
    assert {name: current["Mappings"].get(name) for name in snapshot["Mappings"]} == snapshot["Mappings"]


if __name__ == "__main__":
    source = Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else None
    json.dump(normalised(transformed(source) if source else transformed()), sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")
