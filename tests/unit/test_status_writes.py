"""Nothing writes a job's status but the state machine's transition: a rule over the code, read as written.

The status (and what moves with it: status_since, owner_status, timeline) is written by one adapter method,
`DynamoJobsRepository._update` when given `entered`, which only `transition` (the table's next status) and
`enter_finalizing` (the table's PROVIDER_COMPLETED, without a read) give it. At run time `update_fields` refuses
status fields (tests/unit/test_jobs_repository.py); this test fails when another way to write them appears.
"""

import ast
from pathlib import Path

LAYER = Path(__file__).resolve().parents[2] / "layers" / "common" / "avatarjobs"
FUNCTIONS = Path(__file__).resolve().parents[2] / "functions"
JOBS_TABLE = LAYER / "adapters" / "jobs_table.py"
DYNAMODB_WRITES = {"update_item", "put_item", "transact_write_items", "batch_write_item", "delete_item"}
STATUS_WRITERS = {"transition", "enter_finalizing"}


def modules() -> list[Path]:
    return sorted([*LAYER.rglob("*.py"), *FUNCTIONS.rglob("*.py")])


def calls(tree: ast.AST) -> list[ast.Call]:
    return [node for node in ast.walk(tree) if isinstance(node, ast.Call)]


def called_name(call: ast.Call) -> str | None:
    function = call.func
    return function.attr if isinstance(function, ast.Attribute) else getattr(function, "id", None)


def test_the_jobs_table_is_written_by_its_adapter_alone() -> None:
    writers = {
        f"{path.relative_to(LAYER.parent.parent)}:{call.lineno}"
        for path in modules()
        for call in calls(ast.parse(path.read_text()))
        if called_name(call) in DYNAMODB_WRITES
    }
    assert writers, "the scan found no DynamoDB write at all: it reads the wrong files"
    assert {writer.split(":")[0] for writer in writers} == {"common/avatarjobs/adapters/jobs_table.py"}


def test_only_the_transition_methods_give_the_update_a_status() -> None:
    tree = ast.parse(JOBS_TABLE.read_text())
    givers = set()
    for function in ast.walk(tree):
        if isinstance(function, ast.FunctionDef):
            for call in calls(function):
                if called_name(call) == "_update" and any(keyword.arg == "entered" for keyword in call.keywords):
                    givers.add(function.name)
    assert givers == STATUS_WRITERS


def test_the_transition_takes_its_status_from_the_state_machine() -> None:
    tree = ast.parse(JOBS_TABLE.read_text())
    (transition,) = [node for node in ast.walk(tree) if isinstance(node, ast.FunctionDef) and node.name == "transition"]
    assert "next_status" in {called_name(call) for call in calls(transition)}


def test_no_code_makes_a_job_with_another_status_or_names_a_status_setter() -> None:
    offenders = []
    for path in modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.Attribute) and "update_status" in str(
                getattr(node, "name", None) or getattr(node, "attr", "")
            ):
                offenders.append(f"{path.name}:{node.lineno} update_status")
            if isinstance(node, ast.Call) and called_name(node) == "model_copy":
                for keyword in node.keywords:
                    if keyword.arg == "update" and isinstance(keyword.value, ast.Dict):
                        keys = {key.value for key in keyword.value.keys if isinstance(key, ast.Constant)}
                        if keys & {"status", "status_since", "timeline"}:
                            offenders.append(f"{path.name}:{node.lineno} model_copy(update=status)")
    assert offenders == []
