"""Reads template.yaml as CloudFormation would: its YAML with the short forms of intrinsics, its language extensions
(Fn::ForEach) expanded, and what its Refs, GetAtts, Subs and Fn::Ifs (its Conditions) resolve to once provisioned
(Stack), with the functions' settings as SAM gives them (Globals, then their own).
"""

import copy
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

TEMPLATE_PATH = Path(__file__).resolve().parents[2] / "template.yaml"
REGION = "us-east-1"
FUNCTION_TYPE = "AWS::Serverless::Function"
ACCOUNT_ID = "123456789012"  # moto's default account
# What `Ref: AWS::NoValue` resolves to: the map entry or list item it is the value of is left out.
_NO_VALUE = object()


class _CloudFormationLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short forms (!Ref, !GetAtt, !Sub, ...) read as their long forms."""


def _intrinsic(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{suffix}": value}


_CloudFormationLoader.add_multi_constructor("!", _intrinsic)


def load_template(path: Path = TEMPLATE_PATH) -> dict[str, Any]:
    """The template as a document of its own (the caller may change it), its Fn::ForEach loops expanded; parsed
    once per file version."""
    stat = path.stat()
    return copy.deepcopy(_parsed_template(path.resolve(), stat.st_mtime_ns, stat.st_size))


@cache
def _parsed_template(path: Path, _mtime_ns: int, _size: int) -> dict[str, Any]:
    # Parsing the YAML is most of what provisioning a mocked account costs in the unit tests; a copy is not.
    with path.open() as stream:
        document: dict[str, Any] = yaml.load(stream, Loader=_CloudFormationLoader)  # noqa: S506 - SafeLoader subclass
    return expand_language_extensions(_unshared(document))


def _unshared(value: Any) -> Any:
    """The document with every YAML alias written out as a copy of its own (a caller changing one place must not
    change the others, as in the template CloudFormation receives)."""
    if isinstance(value, dict):
        return {key: _unshared(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_unshared(item) for item in value]
    return value


_FOR_EACH = "Fn::ForEach::"
_LANGUAGE_EXTENSIONS = "AWS::LanguageExtensions"


def expand_language_extensions(template: dict[str, Any]) -> dict[str, Any]:
    """The template with its Fn::ForEach loops written out, as the AWS::LanguageExtensions transform does.

    Where CloudFormation expands them (the SAM CLI's samcli.lib.cfn_language_extensions does the same): in
    Conditions, Resources, the Properties of a resource, Outputs, and the bodies of other loops. In a body, the
    loop's identifier is replaced in keys and strings (${Name}; &{Name} without non-alphanumeric characters) and
    `Ref: Name` becomes the value itself; a Ref or GetAtt whose name is then a plain Fn::Sub string names that
    resource, and a Fn::FindInMap with plain arguments is its value. The transform is left in the template's
    Transform: the rest of devstack reads only the expanded sections.
    """
    transforms = template.get("Transform", [])
    if _LANGUAGE_EXTENSIONS not in (transforms if isinstance(transforms, list) else [transforms]):
        return template
    mappings = template.get("Mappings", {})
    expanded = dict(template)
    for section in ("Conditions", "Outputs"):
        if section in template:
            expanded[section] = _expand_loops(template[section], mappings)
    resources = _expand_loops(template.get("Resources", {}), mappings)
    for resource in resources.values():
        if isinstance(resource, dict) and isinstance(resource.get("Properties"), dict):
            resource["Properties"] = _expand_loops(resource["Properties"], mappings)
    expanded["Resources"] = resources
    return expanded


def _expand_loops(section: dict[str, Any], mappings: dict[str, Any]) -> dict[str, Any]:
    expanded: dict[str, Any] = {}
    for key, value in section.items():
        entries = _loop_entries(key, value, mappings) if key.startswith(_FOR_EACH) else {key: value}
        for entry_key, entry in entries.items():
            if entry_key in expanded:
                raise ValueError(f"{key} makes {entry_key}, which the template already has")
            expanded[entry_key] = entry
    return expanded


def _loop_entries(key: str, loop: Any, mappings: dict[str, Any]) -> dict[str, Any]:
    identifier, collection, body = loop
    if not isinstance(collection, list) or not all(isinstance(item, str) for item in collection):
        raise ValueError(f"{key}: only a literal list of strings is expanded here, not {collection!r}")
    entries: dict[str, Any] = {}
    for item in collection:
        written = _simplified(_substituted(body, identifier, item), mappings)
        for entry_key, entry in _expand_loops(written, mappings).items():
            if entry_key in entries:
                raise ValueError(f"{key} makes {entry_key} twice")
            entries[entry_key] = entry
    return entries


def _substituted(value: Any, identifier: str, item: str) -> Any:
    if isinstance(value, str):
        alphanumeric = re.sub(r"[^A-Za-z0-9]", "", item)
        return value.replace(f"${{{identifier}}}", item).replace(f"&{{{identifier}}}", alphanumeric)
    if isinstance(value, list):
        return [_substituted(element, identifier, item) for element in value]
    if isinstance(value, dict):
        if value == {"Ref": identifier}:
            return item
        return {_substituted(k, identifier, item): _substituted(v, identifier, item) for k, v in value.items()}
    return value


def _simplified(value: Any, mappings: dict[str, Any]) -> Any:
    """Ref and GetAtt of a name given by a plain Fn::Sub, and Fn::FindInMap of plain arguments, as CloudFormation
    reads them once a loop's identifier is replaced."""
    if isinstance(value, list):
        return [_simplified(element, mappings) for element in value]
    if not isinstance(value, dict):
        return value
    simplified = {key: _simplified(element, mappings) for key, element in value.items()}
    argument = simplified.get("Fn::FindInMap")
    if len(simplified) == 1 and isinstance(argument, list) and all(isinstance(a, str) for a in argument):
        mapping, top, second = argument
        return copy.deepcopy(mappings[mapping][top][second])
    if set(simplified) == {"Ref"}:
        simplified["Ref"] = _plain(simplified["Ref"])
    if set(simplified) == {"Fn::GetAtt"} and isinstance(simplified["Fn::GetAtt"], list):
        simplified["Fn::GetAtt"] = [_plain(element) for element in simplified["Fn::GetAtt"]]
    return simplified


def _plain(value: Any) -> Any:
    """A Fn::Sub without variables is its string."""
    text = value.get("Fn::Sub") if isinstance(value, dict) and len(value) == 1 else None
    return text if isinstance(text, str) and "${" not in text else value


@dataclass(frozen=True)
class FunctionEvent:
    """One entry of a function's Events, its Properties resolved against the stack."""

    name: str
    type: str
    properties: dict[str, Any]


@dataclass(frozen=True)
class FunctionSpec:
    """What the local stack needs to run an AWS::Serverless::Function of the template (Globals applied)."""

    logical_id: str
    name: str
    arn: str
    code_uri: str
    handler: str
    timeout_seconds: int
    memory_mb: int
    layer_uris: tuple[str, ...]  # ContentUri of the template's own layers, in the function's order
    events: dict[str, FunctionEvent]
    event_invoke_config: dict[str, Any]


@dataclass
class Stack:
    """The physical resources made from a template: what Ref and GetAtt resolve to."""

    template: dict[str, Any]
    refs: dict[str, str] = field(default_factory=dict)
    attributes: dict[tuple[str, str], str] = field(default_factory=dict)
    stack_name: str = "avatarjobs"
    parameters: dict[str, str] = field(default_factory=dict)  # overrides of the template's parameter defaults

    def resolve(self, value: Any) -> Any:
        """Evaluates the intrinsic functions of a template value against this stack."""
        if isinstance(value, list):
            return [item for item in (self.resolve(item) for item in value) if item is not _NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) != 1:
            resolved = {key: self.resolve(item) for key, item in value.items()}
            return {key: item for key, item in resolved.items() if item is not _NO_VALUE}
        ((name, argument),) = value.items()
        intrinsics: dict[str, Callable[[Any], Any]] = {
            "Ref": self._ref,
            "Fn::GetAtt": lambda argument: self.attributes[(argument[0], argument[1])],
            "Fn::Sub": self._sub,
            "Fn::Join": self._join,
            "Fn::Split": lambda argument: str(self.resolve(argument[1])).split(str(argument[0])),
            "Fn::FindInMap": self._find_in_map,
            "Fn::If": self._if,
        }
        intrinsic = intrinsics.get(name)
        if intrinsic:
            return intrinsic(argument)
        resolved = self.resolve(argument)
        return {} if resolved is _NO_VALUE else {name: resolved}

    def condition(self, name: str) -> bool:
        """Whether the template's condition holds for this stack's parameters."""
        return self._holds(self.template["Conditions"][name])

    def _holds(self, expression: Any) -> bool:
        ((function, argument),) = expression.items()
        if function in ("Condition", "Fn::Condition"):  # the long form, and the loader's reading of !Condition
            return self.condition(argument)
        if function == "Fn::Equals":
            left, right = (str(self.resolve(item)) for item in argument)
            return left == right
        if function == "Fn::Not":
            return not self._holds(argument[0])
        if function == "Fn::And":
            return all(self._holds(item) for item in argument)
        if function == "Fn::Or":
            return any(self._holds(item) for item in argument)
        raise ValueError(f"{function} is not a condition function")

    def _if(self, argument: list[Any]) -> Any:
        name, when_true, when_false = argument
        return self.resolve(when_true if self.condition(name) else when_false)

    def _join(self, argument: list[Any]) -> str:
        separator, items = argument
        return str(separator).join(str(item) for item in self.resolve(items))

    def _find_in_map(self, argument: list[Any]) -> Any:
        mapping, top, second = (str(self.resolve(item)) for item in argument)
        table = {str(key): value for key, value in self.template["Mappings"][mapping].items()}
        return table[top][second]

    def _ref(self, logical_id: str) -> Any:
        if logical_id == "AWS::NoValue":
            return _NO_VALUE
        pseudo = {
            "AWS::Region": REGION,
            "AWS::AccountId": ACCOUNT_ID,
            "AWS::StackName": self.stack_name,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
        }
        if logical_id in pseudo:
            return pseudo[logical_id]
        if logical_id in self.refs:
            return self.refs[logical_id]
        if logical_id in self.parameters:  # as `sam deploy --parameter-overrides` would give it
            return self.parameters[logical_id]
        parameter = self.template.get("Parameters", {}).get(logical_id)
        if parameter is not None and "Default" in parameter:
            return str(parameter["Default"])
        raise KeyError(f"!Ref {logical_id}: no such resource or parameter with a default")

    def _sub(self, argument: str | list[Any]) -> str:
        text, raw_variables = (argument, {}) if isinstance(argument, str) else argument
        variables = {key: self.resolve(item) for key, item in raw_variables.items()}

        def replace(match: re.Match[str]) -> str:
            name = match[1]
            if name in variables:
                return str(variables[name])
            if "." in name:
                logical_id, attribute = name.split(".", 1)
                return self.attributes[(logical_id, attribute)]
            return str(self._ref(name))

        return re.sub(r"\$\{([^}!]+)\}", replace, text)

    def function_environment(self, logical_id: str) -> dict[str, str]:
        """The environment a function gets: Globals merged with its own variables, every Ref resolved."""
        globals_ = self.template.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {})
        own = self.template["Resources"][logical_id]["Properties"].get("Environment", {}).get("Variables", {})
        return {name: str(self.resolve(value)) for name, value in {**globals_, **own}.items()}

    def function(self, logical_id: str) -> FunctionSpec:
        """The function's code, handler, limits and events as SAM would deploy them (Globals, then its own)."""
        globals_ = self.template.get("Globals", {}).get("Function", {})
        own = self.template["Resources"][logical_id]["Properties"]

        def setting(name: str, default: Any) -> Any:
            return self.resolve(own.get(name, globals_.get(name, default)))

        events = {
            name: FunctionEvent(name, event["Type"], self.resolve(event.get("Properties", {})))
            for name, event in own.get("Events", {}).items()
        }
        return FunctionSpec(
            logical_id=logical_id,
            name=self.refs[logical_id],
            arn=self.attributes[(logical_id, "Arn")],
            code_uri=str(setting("CodeUri", ".")),
            handler=str(setting("Handler", "")),
            timeout_seconds=int(setting("Timeout", 3)),  # Lambda's default when neither says
            memory_mb=int(setting("MemorySize", 128)),
            layer_uris=self._layer_uris(own.get("Layers", globals_.get("Layers", []))),
            events=events,
            event_invoke_config=self.resolve(own.get("EventInvokeConfig", {})),
        )

    def functions(self) -> dict[str, FunctionSpec]:
        return {logical_id: self.function(logical_id) for logical_id in self.resources_of_type(FUNCTION_TYPE)}

    def _layer_uris(self, layers: list[Any]) -> tuple[str, ...]:
        # A layer of this template is its ContentUri; a layer by ARN (another account's) cannot run here.
        uris: list[str] = []
        for layer in layers:
            reference = layer.get("Ref") if isinstance(layer, dict) else None
            resource = self.template["Resources"].get(reference) if isinstance(reference, str) else None
            if resource is None or resource["Type"] != "AWS::Serverless::LayerVersion":
                raise ValueError(f"layer {layer!r} is not a layer of this template; the local stack cannot load it")
            uris.append(str(self.resolve(resource["Properties"]["ContentUri"])))
        return tuple(uris)

    def resources_of_type(self, resource_type: str) -> dict[str, dict[str, Any]]:
        return {
            logical_id: resource
            for logical_id, resource in self.template["Resources"].items()
            if resource["Type"] == resource_type
        }
