"""devstack reads template.yaml's Fn::ForEach loops as the SAM CLI's own implementation of AWS::LanguageExtensions
does, so the local stack and the unit tests make the resources a deploy makes."""

import json
from typing import Any

import pytest

from devstack.cloudformation import Stack, expand_language_extensions, load_template
from tests.support.sam_template import SamEnvironmentMissing, expanded


def _json(document: Any) -> Any:
    return json.loads(json.dumps(document, sort_keys=True))


@pytest.mark.parametrize("section", ["Resources", "Outputs", "Conditions"])
def test_the_template_expands_as_the_sam_cli_expands_it(section: str) -> None:
    try:
        theirs = expanded()
    except SamEnvironmentMissing as missing:
        pytest.fail(str(missing))
    assert _json(load_template()[section]) == _json(theirs[section])


def test_a_loop_writes_its_body_once_per_value_in_keys_strings_refs_and_maps() -> None:
    template = {
        "Transform": ["AWS::LanguageExtensions", "AWS::Serverless-2016-10-31"],
        "Mappings": {"Texts": {"Of": {"A": "text of a", "B": "text of b"}}},
        "Resources": {
            "Fn::ForEach::Things": [
                "Name",
                ["A", "B"],
                {
                    "${Name}Alarm": {
                        "Type": "AWS::CloudWatch::Alarm",
                        "Properties": {
                            "AlarmDescription": {"Fn::FindInMap": ["Texts", "Of", {"Ref": "Name"}]},
                            "Namespace": {"Fn::Sub": "/x/${${Name}Queue}"},
                            "Dimensions": [
                                {"Name": "Ref", "Value": {"Ref": {"Fn::Sub": "${Name}Queue"}}},
                                {"Name": "GetAtt", "Value": {"Fn::GetAtt": [{"Ref": "Name"}, "QueueName"]}},
                                {"Name": "Plain", "Value": {"Ref": "Name"}},
                            ],
                        },
                    }
                },
            ],
            "Other": {"Type": "AWS::SQS::Queue"},
        },
    }
    resources = expand_language_extensions(template)["Resources"]
    assert list(resources) == ["AAlarm", "BAlarm", "Other"]
    assert resources["BAlarm"]["Properties"] == {
        "AlarmDescription": "text of b",
        "Namespace": {"Fn::Sub": "/x/${BQueue}"},
        "Dimensions": [
            {"Name": "Ref", "Value": {"Ref": "BQueue"}},
            {"Name": "GetAtt", "Value": {"Fn::GetAtt": ["B", "QueueName"]}},
            {"Name": "Plain", "Value": "B"},
        ],
    }


def test_a_template_without_the_transform_is_left_as_it_is() -> None:
    template = {"Resources": {"Fn::ForEach::Things": ["Name", ["A"], {"${Name}": {"Type": "AWS::SQS::Queue"}}]}}
    assert expand_language_extensions(template) is template


def test_a_loop_that_makes_an_existing_resource_is_refused() -> None:
    template = {
        "Transform": "AWS::LanguageExtensions",
        "Resources": {
            "AQueue": {"Type": "AWS::SQS::Queue"},
            "Fn::ForEach::Things": ["Name", ["A"], {"${Name}Queue": {"Type": "AWS::SQS::Queue"}}],
        },
    }
    with pytest.raises(ValueError, match="AQueue"):
        expand_language_extensions(template)


def test_what_the_template_writes_once_is_a_copy_of_its_own_in_every_place() -> None:
    resources = load_template()["Resources"]
    dispatch = resources["DispatchFunction"]["Properties"]
    finalize = resources["FinalizeFunction"]["Properties"]
    assert dispatch["Policies"][0]["Statement"][0] == finalize["Policies"][0]["Statement"][0]  # one anchor, two uses
    assert dispatch["Policies"][0]["Statement"][0] is not finalize["Policies"][0]["Statement"][0]
    fal_url = {"Ref": "FalQueueBaseUrl"}
    assert dispatch["Environment"]["Variables"]["FAL_QUEUE_BASE_URL"] == fal_url
    assert (
        dispatch["Environment"]["Variables"]["FAL_QUEUE_BASE_URL"]
        is not (finalize["Environment"]["Variables"]["FAL_QUEUE_BASE_URL"])
    )


_CONDITIONAL_TEMPLATE: dict[str, Any] = {
    "Parameters": {"Names": {"Type": "String", "Default": ""}},
    "Conditions": {
        "HasNames": {"Fn::Not": [{"Fn::Equals": [{"Ref": "Names"}, ""]}]},
        "HasOneName": {
            "Fn::And": [
                {"Condition": "HasNames"},
                {"Fn::Equals": [{"Fn::Join": ["", {"Fn::Split": [",", {"Ref": "Names"}]}]}, {"Ref": "Names"}]},
            ]
        },
    },
}
_CONDITIONAL_VALUE = {
    "Always": "x",
    "Name": {"Fn::If": ["HasOneName", {"Fn::Sub": "'${Names}'"}, {"Ref": "AWS::NoValue"}]},
    "List": ["a", {"Fn::If": ["HasNames", "b", {"Ref": "AWS::NoValue"}]}],
    "Only": {"Nested": {"Fn::If": ["HasNames", "n", {"Ref": "AWS::NoValue"}]}},
}


@pytest.mark.parametrize(
    ("names", "resolved"),
    [
        ("", {"Always": "x", "List": ["a"], "Only": {}}),
        ("one", {"Always": "x", "Name": "'one'", "List": ["a", "b"], "Only": {"Nested": "n"}}),
        ("one,two", {"Always": "x", "List": ["a", "b"], "Only": {"Nested": "n"}}),
    ],
)
def test_fn_if_follows_the_templates_conditions_and_no_value_leaves_the_entry_out(
    names: str, resolved: dict[str, Any]
) -> None:
    stack = Stack(_CONDITIONAL_TEMPLATE, parameters={"Names": names})
    assert stack.resolve(_CONDITIONAL_VALUE) == resolved
