"""The Jobs and Idempotency tables (DynamoDB): one item per job; every status change one conditional update."""

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError
from ulid import ULID

from avatarjobs.domain.errors import TransitionConflict
from avatarjobs.domain.job import Job, JobStatus, isoformat, utc_now
from avatarjobs.domain.ports import (
    JOB_LIST_MAX_EVALUATED,
    IdempotencyKeyTaken,
    IdempotencyRecord,
    JobAlreadyExists,
    JobFilters,
    StoredVersion,
)
from avatarjobs.domain.state_machine import JobEvent, next_status, sources

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

BY_OWNER_INDEX = "by_owner"
BY_OWNER_STATUS_INDEX = "by_owner_status"
BY_STATUS_INDEX = "by_status"
# The by_owner_status key a job gets when its provider's result is recorded, stored with the job when it is
# created: the webhook's one conditional write (enter_finalizing) copies it without reading the owner first.
FINALIZING_OWNER_STATUS = "finalizing_owner_status"

# Written only with a status change, from the state machine's table (transition, enter_finalizing).
STATUS_FIELDS = frozenset({"status", "status_since", "owner_status", "timeline", FINALIZING_OWNER_STATUS})
# Where a completion recorded without a read (enter_finalizing) may find the job; from each, the table leads to
# FINALIZING (tests/unit/test_state_machine.py), whose by_owner_status key is stored when the job is created.
_COMPLETABLE = sorted(sources(JobEvent.PROVIDER_COMPLETED))

# Kept as JSON text: they are never queried into, and DynamoDB's number type would turn floats into Decimals.
_JSON_TEXT_FIELDS = ("request", "metadata")

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def _serialize(values: dict[str, Any]) -> dict[str, "AttributeValueTypeDef"]:
    return {name: _serializer.serialize(value) for name, value in values.items()}


def _deserialize(item: dict[str, Any]) -> dict[str, Any]:
    return {name: _deserializer.deserialize(value) for name, value in item.items()}


# A job's id is made just after its created_at is read (jobs_service.create_job): their clocks differ by far less.
_ID_CLOCK_MARGIN = timedelta(minutes=1)
# How many jobs a filtered listing reads per Query at least (a page of 20 of one model among many: few round trips).
_FILTERED_READ_AHEAD = 100


def _ulid_at(moment: datetime, fill: str) -> str:
    """The smallest ("0") or largest ("Z") ULID of the millisecond `moment` is in."""
    milliseconds = max(0, int(moment.timestamp() * 1000))
    return str(ULID.from_bytes(milliseconds.to_bytes(6, "big") + bytes(10)))[:10] + fill * 16


def _job_id_range(filters: JobFilters, after_job_id: str | None) -> tuple[str | None, str | None, str | None] | None:
    """The job ids to read (lowest, highest, both inclusive, None for no bound) and the one to start after; None
    when nothing can match.

    Both indexes sort by job id, a ULID whose first 48 bits are its creation time: a time range is a range of the
    sort key (nothing outside it is read), widened by a margin and made exact by the filter on created_at."""
    lower = _ulid_at(filters.created_from - _ID_CLOCK_MARGIN, "0") if filters.created_from else None
    upper = _ulid_at(filters.created_before + _ID_CLOCK_MARGIN, "Z") if filters.created_before else None
    start = None
    if after_job_id is not None:
        if lower is not None and after_job_id <= lower:
            return None
        # DynamoDB refuses a start key outside the key condition: the cursor becomes the range's (inclusive) end.
        if upper is None or after_job_id <= upper:
            upper = start = after_job_id
    return lower, upper, start


def _filter_expression(filters: JobFilters, names: dict[str, str], values: dict[str, Any]) -> str:
    terms = []
    if filters.model is not None:
        names["#model"] = "model"
        values[":model"] = {"S": filters.model}
        terms.append("#model = :model")
    if filters.created_from is not None:
        names["#created"] = "created_at"
        values[":created_from"] = {"S": isoformat(filters.created_from)}
        terms.append("#created >= :created_from")
    if filters.created_before is not None:
        names["#created"] = "created_at"
        values[":created_before"] = {"S": isoformat(filters.created_before)}
        terms.append("#created < :created_before")
    return " AND ".join(terms)


def owner_status(owner: str, status: str) -> str:
    return f"{owner}#{status}"


def _without_status_fields(changes: dict[str, Any]) -> dict[str, Any]:
    """Refuses a change that would write a status outside the state machine's transition."""
    written = STATUS_FIELDS.intersection(changes)
    if written:
        raise ValueError(f"status fields change only through a transition: {sorted(written)}")
    return changes


def job_to_item(job: Job) -> dict[str, "AttributeValueTypeDef"]:
    values = job.model_dump(mode="json", exclude_none=True)
    for name in _JSON_TEXT_FIELDS:
        if name in values:
            values[name] = json.dumps(values[name], separators=(",", ":"))
    values["owner_status"] = owner_status(job.owner, job.status)
    values[FINALIZING_OWNER_STATUS] = owner_status(job.owner, JobStatus.FINALIZING)
    return _serialize(values)


def job_from_item(item: dict[str, Any]) -> Job:
    values = _deserialize(item)
    values.pop("owner_status", None)
    values.pop(FINALIZING_OWNER_STATUS, None)
    for name in _JSON_TEXT_FIELDS:
        if name in values:
            values[name] = json.loads(values[name])
    return Job.model_validate(values)


def _name(names: dict[str, str], field: str) -> str:
    """The placeholder of an attribute name in an expression (one per name)."""
    for placeholder, known in names.items():
        if known == field:
            return placeholder
    placeholder = f"#n{len(names)}"
    names[placeholder] = field
    return placeholder


def _value(values: dict[str, Any], value: Any) -> str:
    placeholder = f":v{len(values)}"
    values[placeholder] = value
    return placeholder


@dataclass(frozen=True)
class _AttributePath:
    """An update's operand that is another attribute of the item, not a value."""

    name: str


class _Condition:
    """A condition expression built from parts, joined with AND; its placeholders are shared with the update."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}
        self.values: dict[str, Any] = {}
        self._parts: list[str] = []

    @classmethod
    def version_of(cls, job: StoredVersion) -> "_Condition":
        """The stored job still has this status and version: nothing changed it since it was read."""
        condition = cls()
        condition.equal("status", job.status.value)
        condition.equal("version", job.version)
        return condition

    def equal(self, field: str, value: Any) -> None:
        self._parts.append(f"{_name(self.names, field)} = {_value(self.values, value)}")

    def one_of(self, field: str, choices: list[Any]) -> None:
        options = ", ".join(_value(self.values, choice) for choice in choices)
        self._parts.append(f"{_name(self.names, field)} IN ({options})")

    def absent(self, field: str) -> None:
        self._parts.append(f"attribute_not_exists({_name(self.names, field)})")

    def present(self, field: str) -> None:
        self._parts.append(f"attribute_exists({_name(self.names, field)})")

    def expression(self) -> str:
        # Every condition names the status, so a job that does not exist fails it: an update never creates one.
        return " AND ".join(self._parts)


def _is_condition_failure(error: ClientError) -> bool:
    return error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


class DynamoJobsRepository:
    def __init__(
        self,
        client: "DynamoDBClient",
        jobs_table: str,
        idempotency_table: str,
        *,
        max_evaluated: int = JOB_LIST_MAX_EVALUATED,
    ) -> None:
        self._client = client
        self._jobs_table = jobs_table
        self._idempotency_table = idempotency_table
        self._max_evaluated = max_evaluated

    def create(self, job: Job, idempotency: IdempotencyRecord | None) -> None:
        put_job: Any = {
            "Put": {
                "TableName": self._jobs_table,
                "Item": job_to_item(job),
                "ConditionExpression": "attribute_not_exists(job_id)",
            }
        }
        if idempotency is None:
            try:
                self._client.put_item(**put_job["Put"])
            except self._client.exceptions.ConditionalCheckFailedException:
                raise JobAlreadyExists(job.job_id) from None
            return
        put_record: Any = {
            "Put": {
                "TableName": self._idempotency_table,
                "Item": _serialize(
                    {
                        "id": self._idempotency_id(idempotency.owner, idempotency.key),
                        "job_id": idempotency.job_id,
                        "fingerprint": idempotency.fingerprint,
                        "expiration": idempotency.expiration,
                    }
                ),
                # TTL deletes expired items only eventually: an expired record counts as absent.
                "ConditionExpression": "attribute_not_exists(id) OR expiration < :now",
                "ExpressionAttributeValues": {":now": {"N": str(int(utc_now().timestamp()))}},
            }
        }
        try:
            self._client.transact_write_items(TransactItems=[put_job, put_record])
        except self._client.exceptions.TransactionCanceledException as error:
            reasons = [reason.get("Code") for reason in error.response.get("CancellationReasons", [])]
            if len(reasons) > 1 and reasons[1] == "ConditionalCheckFailed":
                raise IdempotencyKeyTaken() from error
            if reasons and reasons[0] == "ConditionalCheckFailed":
                raise JobAlreadyExists(job.job_id) from error
            raise

    def get(self, job_id: str) -> Job | None:
        response = self._client.get_item(TableName=self._jobs_table, Key={"job_id": {"S": job_id}}, ConsistentRead=True)
        item = response.get("Item")
        return job_from_item(item) if item else None

    def get_idempotency_record(self, owner: str, key: str) -> IdempotencyRecord | None:
        response = self._client.get_item(
            TableName=self._idempotency_table,
            Key={"id": {"S": self._idempotency_id(owner, key)}},
            ConsistentRead=True,
        )
        if "Item" not in response:
            return None
        values = _deserialize(response["Item"])
        if int(values["expiration"]) < int(utc_now().timestamp()):
            return None
        return IdempotencyRecord(owner, key, values["job_id"], values["fingerprint"], int(values["expiration"]))

    def transition(
        self, job: StoredVersion, event: JobEvent, *, now: str, changes: dict[str, Any] | None = None
    ) -> Job:
        new_status = next_status(job.status, event)
        return self._update(
            job.job_id,
            _Condition.version_of(job),
            now=now,
            changes=_without_status_fields(changes or {}),
            entered=(new_status, owner_status(job.owner, new_status)),
        )

    def update_fields(
        self, job: StoredVersion, *, now: str, changes: dict[str, Any], remove: tuple[str, ...] = ()
    ) -> Job:
        _without_status_fields({**changes, **dict.fromkeys(remove)})
        return self._update(job.job_id, _Condition.version_of(job), now=now, changes=changes, remove=remove)

    def claim_for_dispatch(self, job_id: str, *, now: str, lease_until: str, webhook_token_sha256: str) -> Job:
        condition = _Condition()
        condition.equal("status", JobStatus.ACCEPTED.value)
        condition.absent("dispatch_lease_until")
        changes = {"dispatch_lease_until": lease_until, "webhook_token_sha256": webhook_token_sha256}
        return self._update(job_id, condition, now=now, changes=changes, increment=("attempts",))

    def enter_finalizing(self, job_id: str, *, expected: Mapping[str, str], now: str, changes: dict[str, Any]) -> Job:
        # The owner is not known without a read, so the by_owner_status key the job gets is copied from the one
        # stored for this step when the job was created (items from before it was stored fail the condition).
        condition = _Condition()
        condition.one_of("status", [status.value for status in _COMPLETABLE])
        for field, value in expected.items():
            condition.equal(field, value)
        condition.present(FINALIZING_OWNER_STATUS)
        return self._update(
            job_id,
            condition,
            now=now,
            changes=_without_status_fields(changes),
            entered=(JobStatus.FINALIZING, _AttributePath(FINALIZING_OWNER_STATUS)),
        )

    def _update(
        self,
        job_id: str,
        condition: "_Condition",
        *,
        now: str,
        changes: dict[str, Any],
        remove: tuple[str, ...] = (),
        entered: "tuple[JobStatus, str | _AttributePath] | None" = None,
        increment: tuple[str, ...] = (),
    ) -> Job:
        """One UpdateItem under `condition`; the version goes up by one. Returns the job as stored after it.

        When the condition does not hold, TransitionConflict carries the job as it was (ALL_OLD), or None when
        there is no such job: callers decide what to do next without reading it again.
        """
        names, values = condition.names, condition.values
        assignments = [
            f"{_name(names, 'version')} = {_name(names, 'version')} + {_value(values, 1)}",
            f"{_name(names, 'updated_at')} = {_value(values, now)}",
        ]
        if entered is not None:
            status, key = entered
            changes = {"status": status.value, "status_since": now, **changes}
            key_operand = _name(names, key.name) if isinstance(key, _AttributePath) else _value(values, key)
            assignments.append(f"{_name(names, 'owner_status')} = {key_operand}")
            assignments.append(f"{_name(names, 'timeline')}.{_name(names, status.value)} = {_value(values, now)}")
        for field in increment:
            counter = _name(names, field)
            assignments.append(f"{counter} = if_not_exists({counter}, {_value(values, 0)}) + {_value(values, 1)}")
        assignments += [f"{_name(names, field)} = {_value(values, value)}" for field, value in changes.items()]
        expression = "SET " + ", ".join(assignments)
        if remove:
            expression += " REMOVE " + ", ".join(_name(names, field) for field in remove)
        try:
            response = self._client.update_item(
                TableName=self._jobs_table,
                Key={"job_id": {"S": job_id}},
                UpdateExpression=expression,
                ConditionExpression=condition.expression(),
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=_serialize(values),
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as error:
            if _is_condition_failure(error):
                old = cast("dict[str, Any] | None", error.response.get("Item"))  # ALL_OLD; absent: no such job
                raise TransitionConflict(job_id, current=job_from_item(old) if old else None) from None
            raise
        return job_from_item(response["Attributes"])

    def list_in_status(self, status: JobStatus, *, changed_before: str) -> list[Job]:
        query: dict[str, Any] = {
            "TableName": self._jobs_table,
            "IndexName": BY_STATUS_INDEX,
            "KeyConditionExpression": "#status = :status AND status_since < :before",
            "ExpressionAttributeNames": {"#status": "status"},
            "ExpressionAttributeValues": {":status": {"S": status.value}, ":before": {"S": changed_before}},
        }
        jobs: list[Job] = []
        while True:
            response = self._client.query(**query)
            jobs.extend(job_from_item(item) for item in response.get("Items", []))
            if "LastEvaluatedKey" not in response:
                return jobs
            query["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    def list_for_owner(
        self,
        owner: str,
        *,
        status: JobStatus | None,
        limit: int,
        after_job_id: str | None,
        filters: JobFilters | None = None,
    ) -> tuple[list[Job], str | None]:
        if status is None:
            index, key_name, key_value = BY_OWNER_INDEX, "owner", owner
        else:
            index, key_name, key_value = BY_OWNER_STATUS_INDEX, "owner_status", owner_status(owner, status)
        filters = filters or JobFilters()
        id_range = _job_id_range(filters, after_job_id)
        if id_range is None:
            return [], None
        lower, upper, start = id_range
        names = {"#key": key_name}
        values: dict[str, Any] = {":key": {"S": key_value}}
        condition = (
            "#key = :key"
            + {
                (True, True): " AND job_id BETWEEN :lower AND :upper",
                (True, False): " AND job_id >= :lower",
                (False, True): " AND job_id <= :upper",
                (False, False): "",
            }[(lower is not None, upper is not None)]
        )
        values.update({name: {"S": bound} for name, bound in ((":lower", lower), (":upper", upper)) if bound})
        query: dict[str, Any] = {
            "TableName": self._jobs_table,
            "IndexName": index,
            "KeyConditionExpression": condition,
            "ScanIndexForward": False,  # ULIDs sort by time: newest first
        }
        matches = _filter_expression(filters, names, values)
        if matches:
            query["FilterExpression"] = matches
        query.update(ExpressionAttributeNames=names, ExpressionAttributeValues=values)
        if start is not None:
            query["ExclusiveStartKey"] = {"job_id": {"S": start}, key_name: {"S": key_value}}
        # One item more than asked tells whether there is a next page, so the last page has no cursor.
        items: list[dict[str, Any]] = []
        evaluated = 0
        while len(items) <= limit:
            wanted = limit + 1 - len(items)
            if matches:  # read ahead: the filter drops an unknown share of what is read
                wanted = max(0, min(max(wanted, _FILTERED_READ_AHEAD), self._max_evaluated - evaluated))
            if wanted == 0:
                # The search's budget is spent: a short page, continued after the last job read.
                jobs = [job_from_item(item) for item in items]
                return jobs, query["ExclusiveStartKey"]["job_id"]["S"]
            response = self._client.query(**query, Limit=wanted)
            items.extend(response.get("Items", []))
            evaluated += response.get("ScannedCount", 0)
            if "LastEvaluatedKey" not in response:
                break
            query["ExclusiveStartKey"] = response["LastEvaluatedKey"]
        jobs = [job_from_item(item) for item in items[:limit]]
        has_more = len(items) > limit
        return jobs, (jobs[-1].job_id if has_more else None)

    @staticmethod
    def _idempotency_id(owner: str, key: str) -> str:
        return f"{owner}#{key}"
