"""The deployed permissions as AWS evaluates them: template.yaml transformed as CloudFormation does it
(tests/support/sam_template.py: language extensions, then aws-sam-translator), with the AWS managed policies SAM
attaches expanded from pinned copies (tests/iam/aws_managed_policies.json) and explicit Deny statements applied.
"""

import json
from fnmatch import fnmatchcase
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from tests.support.sam_template import SamEnvironmentMissing
from tests.support.sam_template import transformed as sam_transformed

ROOT = Path(__file__).resolve().parents[2]
MANAGED_POLICIES: dict[str, Any] = json.loads((ROOT / "tests" / "iam" / "aws_managed_policies.json").read_text())

FAL_SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:avatarjobs/fal-AbCdEf"
MIRAKO_SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:avatarjobs/mirako-GhIjKl"
KMS_KEY = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
ALL_OPTIONS = {"FalKeySecretArn": FAL_SECRET, "MirakoKeySecretArn": MIRAKO_SECRET, "ProviderKeysKmsKeyArn": KMS_KEY}

# What may stay on "*": writing the function's own logs and traces (Lambda names the log group, X-Ray has no
# resources), and dynamodb:ListStreams, which has no resource to scope and lists stream ARNs, not data.
_EXEMPT_PREFIXES = ("logs:", "xray:")
_EXEMPT_ACTIONS = {"dynamodb:ListStreams"}

Statement = dict[str, Any]


@cache
def transformed() -> dict[str, Any]:
    try:
        return sam_transformed()
    except SamEnvironmentMissing as missing:
        pytest.fail(str(missing))


def _conditions(template: dict[str, Any], parameters: dict[str, str]) -> dict[str, bool]:
    def value(item: Any) -> Any:
        if isinstance(item, dict) and "Ref" in item:
            name = item["Ref"]
            return parameters.get(name, str(template["Parameters"][name].get("Default", "")))
        return item

    def evaluate(expression: Any) -> bool:
        ((name, argument),) = expression.items()
        if name == "Condition":
            return evaluate(template["Conditions"][argument])
        if name == "Fn::Equals":
            return bool(str(value(argument[0])) == str(value(argument[1])))
        if name == "Fn::Not":
            return not evaluate(argument[0])
        if name == "Fn::And":
            return all(evaluate(item) for item in argument)
        if name == "Fn::Or":
            return any(evaluate(item) for item in argument)
        raise AssertionError(f"condition function {name} not evaluated here")

    return {name: evaluate(expression) for name, expression in template.get("Conditions", {}).items()}


_NO_VALUE = {"Ref": "AWS::NoValue"}


def _resolve(value: Any, conditions: dict[str, bool]) -> Any:
    """Takes each Fn::If's branch and drops AWS::NoValue, as CloudFormation does; other intrinsics stay as names."""
    if isinstance(value, list):
        items = [_resolve(item, conditions) for item in value]
        return [item for item in items if item != _NO_VALUE]
    if isinstance(value, dict):
        if set(value) == {"Fn::If"}:
            condition, when_true, when_false = value["Fn::If"]
            return _resolve(when_true if conditions[condition] else when_false, conditions)
        resolved = {key: _resolve(item, conditions) for key, item in value.items()}
        return {key: item for key, item in resolved.items() if item != _NO_VALUE}
    return value


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


class Deployment:
    """The roles of the stack deployed with the given parameters, and what each may do to what."""

    def __init__(self, parameters: dict[str, str]) -> None:
        template = transformed()
        conditions = _conditions(template, parameters)
        self.resources: dict[str, Any] = {
            logical_id: _resolve(resource, conditions)
            for logical_id, resource in template["Resources"].items()
            if conditions.get(resource.get("Condition", ""), True)
        }
        self.statements = {
            logical_id: self._statements(logical_id)
            for logical_id, resource in self.resources.items()
            if resource["Type"] == "AWS::IAM::Role"
        }

    def _statements(self, role: str) -> list[Statement]:
        properties = self.resources[role]["Properties"]
        documents = [policy["PolicyDocument"] for policy in properties.get("Policies", [])]
        for arn in properties.get("ManagedPolicyArns", []):
            if isinstance(arn, dict) and "Ref" in arn:
                documents.append(self.resources[arn["Ref"]]["Properties"]["PolicyDocument"])
                continue
            name = arn["Fn::Sub"].replace("${AWS::Partition}", "aws") if isinstance(arn, dict) else arn
            assert name in MANAGED_POLICIES, f"{role} attaches {name}: pin its document in aws_managed_policies.json"
            documents.append(MANAGED_POLICIES[name]["document"])
        for resource in self.resources.values():  # policies that name the role themselves
            attaches = {"Ref": role} in resource.get("Properties", {}).get("Roles", [])
            if resource["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy") and attaches:
                documents.append(resource["Properties"]["PolicyDocument"])
        return [statement for document in documents for statement in _as_list(document["Statement"])]

    def reach(self, role: str, action: str) -> list[Any]:
        """The resources the role may use the action on ("*" for all), after its Deny statements."""
        statements = self.statements[role]
        denies = [s for s in statements if s["Effect"] == "Deny" and _matches(s["Action"], action)]
        assert all("Condition" not in s for s in denies), "conditional denies are not evaluated here"
        reached: list[Any] = []
        for statement in statements:
            if statement["Effect"] != "Allow" or not _matches(statement["Action"], action):
                continue
            for resource in _as_list(statement["Resource"]):
                if resource == "*":
                    narrowed = [_as_list(s["NotResource"]) for s in denies if "NotResource" in s]
                    reached += [r for r in narrowed[0] if all(r in n for n in narrowed)] if narrowed else ["*"]
                elif not any(_denies(s, resource) for s in denies):
                    reached.append(resource)
        return reached

    def roles_reaching(self, action: str, resource: Any) -> set[str]:
        return {role for role in self.statements if any(r in ("*", resource) for r in self.reach(role, action))}

    def role_of(self, function: str) -> str:
        role: str = self.resources[function]["Properties"]["Role"]["Fn::GetAtt"][0]
        return role

    def functions(self) -> dict[str, Any]:
        return {k: v for k, v in self.resources.items() if v["Type"] == "AWS::Lambda::Function"}


def _matches(actions: Any, action: str) -> bool:
    return any(fnmatchcase(action.lower(), pattern.lower()) for pattern in _as_list(actions))


def _denies(statement: Statement, resource: Any) -> bool:
    if "NotResource" in statement:
        return resource not in _as_list(statement["NotResource"])
    return any(r in ("*", resource) for r in _as_list(statement["Resource"]))


def test_no_role_may_use_a_data_action_on_every_resource() -> None:
    deployment = Deployment(ALL_OPTIONS)
    offending: list[str] = []
    for role, statements in deployment.statements.items():
        actions = {a for s in statements if s["Effect"] == "Allow" for a in _as_list(s["Action"])}
        for action in sorted(actions):
            if action.startswith(_EXEMPT_PREFIXES) or action in _EXEMPT_ACTIONS:
                continue
            if "*" in deployment.reach(role, action):
                offending.append(f"{role}: {action}")
    assert offending == []


def test_every_consumed_queue_and_the_jobs_stream_are_read_only_by_their_own_consumer() -> None:
    deployment = Deployment(ALL_OPTIONS)
    mappings = [
        r["Properties"] for r in deployment.resources.values() if r["Type"] == "AWS::Lambda::EventSourceMapping"
    ]
    sources = {}
    for mapping in mappings:
        action = "dynamodb:GetRecords" if "StreamArn" in json.dumps(mapping["EventSourceArn"]) else "sqs:ReceiveMessage"
        sources[json.dumps(mapping["EventSourceArn"])] = (mapping, action)
    assert len(sources) == 5  # dispatch, finalize, the two dead-letter queues, the jobs stream
    for mapping, action in sources.values():
        consumer = deployment.role_of(mapping["FunctionName"]["Ref"])
        actions = [action, "sqs:DeleteMessage"] if action.startswith("sqs:") else [action, "dynamodb:GetShardIterator"]
        for each in actions:
            assert deployment.roles_reaching(each, mapping["EventSourceArn"]) == {consumer}, (each, mapping)


@pytest.mark.parametrize(
    ("parameter", "variable"),
    [("FalKeySecretArn", "FAL_KEY_SECRET_ARN"), ("MirakoKeySecretArn", "MIRAKO_KEY_SECRET_ARN")],
)
def test_a_provider_key_secret_is_readable_only_by_the_functions_given_its_arn(parameter: str, variable: str) -> None:
    deployment = Deployment(ALL_OPTIONS)
    readers = {
        deployment.role_of(function)
        for function, resource in deployment.functions().items()
        if resource["Properties"]["Environment"]["Variables"].get(variable) == {"Ref": parameter}
    }
    assert len(readers) >= 4  # api (cancel), dispatch, webhook, finalize, reconcile
    assert deployment.roles_reaching("secretsmanager:GetSecretValue", {"Ref": parameter}) == readers
    assert deployment.roles_reaching("kms:Decrypt", {"Ref": "ProviderKeysKmsKeyArn"}) == readers


def test_the_customer_key_decrypts_only_through_secrets_manager() -> None:
    deployment = Deployment(ALL_OPTIONS)
    statements = [
        s
        for role in deployment.statements
        for s in deployment.statements[role]
        if s["Effect"] == "Allow" and _matches(s["Action"], "kms:Decrypt")
    ]
    assert statements
    for statement in statements:
        assert statement["Condition"] == {
            "StringEquals": {"kms:ViaService": {"Fn::Sub": "secretsmanager.${AWS::Region}.amazonaws.com"}}
        }


def test_with_only_a_fal_key_no_function_may_read_another_secret_or_decrypt() -> None:
    deployment = Deployment({"FalKeySecretArn": FAL_SECRET})
    for role in deployment.statements:
        assert deployment.reach(role, "kms:Decrypt") == []
        assert deployment.reach(role, "secretsmanager:GetSecretValue") in ([], [{"Ref": "FalKeySecretArn"}])
