"""The Jobs and Idempotency tables (DynamoDB): one item per job; every status change one conditional update."""

import json
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from avatarjobs.domain.errors import TransitionConflict
from avatarjobs.domain.job import Job, JobStatus, utc_now
from avatarjobs.domain.ports import IdempotencyKeyTaken, IdempotencyRecord

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

BY_OWNER_INDEX = "by_owner"
BY_OWNER_STATUS_INDEX = "by_owner_status"
BY_STATUS_INDEX = "by_status"

# Kept as JSON text: they are never queried into, and DynamoDB's number type would turn floats into Decimals.
_JSON_TEXT_FIELDS = ("request", "metadata")

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def _serialize(values: dict[str, Any]) -> dict[str, "AttributeValueTypeDef"]:
    return {name: _serializer.serialize(value) for name, value in values.items()}


def _deserialize(item: dict[str, Any]) -> dict[str, Any]:
    return {name: _deserializer.deserialize(value) for name, value in item.items()}


def owner_status(owner: str, status: str) -> str:
    return f"{owner}#{status}"


def job_to_item(job: Job) -> dict[str, "AttributeValueTypeDef"]:
    values = job.model_dump(mode="json", exclude_none=True)
    for name in _JSON_TEXT_FIELDS:
        if name in values:
            values[name] = json.dumps(values[name], separators=(",", ":"))
    values["owner_status"] = owner_status(job.owner, job.status)
    return _serialize(values)


def job_from_item(item: dict[str, Any]) -> Job:
    values = _deserialize(item)
    values.pop("owner_status", None)
    for name in _JSON_TEXT_FIELDS:
        if name in values:
            values[name] = json.loads(values[name])
    return Job.model_validate(values)


def _is_condition_failure(error: ClientError) -> bool:
    return error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


class DynamoJobsRepository:
    def __init__(self, client: "DynamoDBClient", jobs_table: str, idempotency_table: str) -> None:
        self._client = client
        self._jobs_table = jobs_table
        self._idempotency_table = idempotency_table

    def create(self, job: Job, idempotency: IdempotencyRecord | None) -> None:
        put_job: Any = {
            "Put": {
                "TableName": self._jobs_table,
                "Item": job_to_item(job),
                "ConditionExpression": "attribute_not_exists(job_id)",
            }
        }
        if idempotency is None:
            self._client.put_item(**put_job["Put"])
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
            reasons = error.response.get("CancellationReasons", [])
            if len(reasons) > 1 and reasons[1].get("Code") == "ConditionalCheckFailed":
                raise IdempotencyKeyTaken() from error
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

    def update_status(self, job: Job, new_status: JobStatus, *, now: str, changes: dict[str, Any] | None = None) -> Job:
        status_changes = {
            "status": new_status.value,
            "status_since": now,
            "owner_status": owner_status(job.owner, new_status),
            **(changes or {}),
        }
        return self._conditional_update(job, now, status_changes, (), entered=new_status)

    def update_fields(self, job: Job, *, now: str, changes: dict[str, Any], remove: tuple[str, ...] = ()) -> Job:
        return self._conditional_update(job, now, changes, remove, entered=None)

    def _conditional_update(
        self, job: Job, now: str, changes: dict[str, Any], remove: tuple[str, ...], entered: JobStatus | None
    ) -> Job:
        """One UpdateItem, only if the stored job still has `job`'s status and version; the version goes up by one."""
        names = {"#status": "status", "#version": "version"}
        values: dict[str, Any] = {":expected": job.status.value, ":version": job.version, ":now": now, ":one": 1}
        assignments = ["#version = #version + :one", "updated_at = :now"]
        if entered is not None:
            names.update({"#timeline": "timeline", "#entered": str(entered)})
            assignments.append("#timeline.#entered = :now")
        for index, (field, value) in enumerate(changes.items()):
            names[f"#c{index}"] = field
            values[f":c{index}"] = value
            assignments.append(f"#c{index} = :c{index}")
        expression = "SET " + ", ".join(assignments)
        if remove:
            names.update({f"#r{index}": field for index, field in enumerate(remove)})
            expression += " REMOVE " + ", ".join(f"#r{index}" for index in range(len(remove)))
        try:
            response = self._client.update_item(
                TableName=self._jobs_table,
                Key={"job_id": {"S": job.job_id}},
                UpdateExpression=expression,
                ConditionExpression="#status = :expected AND #version = :version",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=_serialize(values),
                ReturnValues="ALL_NEW",
            )
        except ClientError as error:
            if _is_condition_failure(error):
                raise TransitionConflict(job.job_id) from None
            raise
        return job_from_item(response["Attributes"])

    def mark_enqueued(self, job_id: str, *, now: str, field: str = "enqueued_at") -> None:
        try:
            self._client.update_item(
                TableName=self._jobs_table,
                Key={"job_id": {"S": job_id}},
                UpdateExpression="SET #field = :now",
                ConditionExpression="attribute_exists(job_id)",
                ExpressionAttributeNames={"#field": field},
                ExpressionAttributeValues={":now": {"S": now}},
            )
        except ClientError as error:
            if not _is_condition_failure(error):
                raise

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
        self, owner: str, *, status: JobStatus | None, limit: int, after_job_id: str | None
    ) -> tuple[list[Job], str | None]:
        if status is None:
            index, key_name, key_value = BY_OWNER_INDEX, "owner", owner
        else:
            index, key_name, key_value = BY_OWNER_STATUS_INDEX, "owner_status", owner_status(owner, status)
        query: dict[str, Any] = {
            "TableName": self._jobs_table,
            "IndexName": index,
            "KeyConditionExpression": "#key = :key",
            "ExpressionAttributeNames": {"#key": key_name},
            "ExpressionAttributeValues": {":key": {"S": key_value}},
            "ScanIndexForward": False,  # ULIDs sort by time: newest first
        }
        if after_job_id is not None:
            query["ExclusiveStartKey"] = {"job_id": {"S": after_job_id}, key_name: {"S": key_value}}
        # One item more than asked tells whether there is a next page, so the last page has no cursor.
        items: list[dict[str, Any]] = []
        while len(items) <= limit:
            response = self._client.query(**query, Limit=limit + 1 - len(items))
            items.extend(response.get("Items", []))
            if "LastEvaluatedKey" not in response:
                break
            query["ExclusiveStartKey"] = response["LastEvaluatedKey"]
        jobs = [job_from_item(item) for item in items[:limit]]
        has_more = len(items) > limit
        return jobs, (jobs[-1].job_id if has_more else None)

    @staticmethod
    def _idempotency_id(owner: str, key: str) -> str:
        return f"{owner}#{key}"
