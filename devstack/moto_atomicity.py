"""Gives moto's DynamoDB the per-item atomicity of the real service, and transactions that cost what they touch.

DynamoDB applies a conditional write atomically: of two writers that both expect version 3, one wins and
the other gets ConditionalCheckFailed. moto evaluates the condition and writes without a lock, so
concurrent requests can all pass the check. Serializing moto's write operations restores the
guarantee our transitions rely on; the conditions themselves still decide who wins.

moto 5.2.5 also makes every TransactWriteItems deep-copy each table it names, items and stream records
included, to roll back on failure: the cost of creating a job grows with every job and every status change
before it, and the write lock is held meanwhile (a few hundred jobs made the local stack crawl). Here a
transaction snapshots only the items it names and the length of each table's stream, and a failed one puts
those items back and drops the stream records it added: the same rollback, in proportion to the transaction.
"""

import copy
import functools
import threading
import types
from collections.abc import Callable
from typing import Any

import moto.dynamodb.models as dynamodb_models
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.dynamo_type import DynamoType
from moto.dynamodb.models.table import Table

_WRITES = ("put_item", "update_item", "delete_item", "transact_write_items")
_lock = threading.RLock()


def _serialized(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def write(*args: Any, **kwargs: Any) -> Any:
        with _lock:
            return method(*args, **kwargs)

    write.__serialized__ = True  # type: ignore[attr-defined]
    return write


def _deepcopy_all_but_tables(value: Any, memo: dict[int, Any] | None = None) -> Any:
    """moto's `copy.deepcopy`, except that a whole table is not copied (see _with_item_rollback)."""
    return value if isinstance(value, Table) else copy.deepcopy(value, memo)


def _key_of(table: Table, operation: str, request: dict[str, Any]) -> tuple[DynamoType, DynamoType | None] | None:
    attributes = request.get("Item") if operation == "Put" else request.get("Key")
    if not isinstance(attributes, dict) or table.hash_key_attr not in attributes:
        return None  # moto itself refuses it, before writing anything
    range_attribute = table.range_key_attr
    range_value = attributes.get(range_attribute) if range_attribute else None
    return DynamoType(attributes[table.hash_key_attr]), DynamoType(range_value) if range_value else None


def _restore(table: Table, hash_value: DynamoType, range_value: DynamoType | None, item: Any) -> None:
    if range_value is not None:
        if item is None:
            table.items[hash_value].pop(range_value, None)
        else:
            table.items[hash_value][range_value] = item
    elif item is None:
        table.items.pop(hash_value, None)
    else:
        table.items[hash_value] = item


def _with_item_rollback(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def transact_write_items(self: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> Any:
        saved: list[tuple[Table, DynamoType, DynamoType | None, Any]] = []
        stream_lengths: dict[str, tuple[Table, int]] = {}
        for entry in transact_items:
            for operation, request in entry.items():
                table = self.tables.get(request.get("TableName", "")) if isinstance(request, dict) else None
                key = _key_of(table, operation, request) if table is not None else None
                if table is None or key is None:
                    continue
                saved.append((table, *key, copy.deepcopy(table.get_item(*key))))
                if table.stream_shard is not None:
                    stream_lengths.setdefault(table.name, (table, len(table.stream_shard.items)))
        try:
            return method(self, transact_items)
        except BaseException:
            for table, hash_value, range_value, item in reversed(saved):
                _restore(table, hash_value, range_value, item)
            for table, length in stream_lengths.values():
                assert table.stream_shard is not None
                del table.stream_shard.items[length:]
            raise

    transact_write_items.__item_rollback__ = True  # type: ignore[attr-defined]
    return transact_write_items


def make_dynamodb_writes_atomic() -> None:
    transact = DynamoDBBackend.transact_write_items
    if not getattr(transact, "__item_rollback__", False) and not getattr(transact, "__serialized__", False):
        # moto's own whole-table snapshot becomes a no-op; the item snapshot above replaces it.
        dynamodb_models.copy = types.SimpleNamespace(deepcopy=_deepcopy_all_but_tables)  # type: ignore[attr-defined,assignment]
        DynamoDBBackend.transact_write_items = _with_item_rollback(transact)  # type: ignore[method-assign]
    for name in _WRITES:
        method = getattr(DynamoDBBackend, name)
        if not getattr(method, "__serialized__", False):
            setattr(DynamoDBBackend, name, _serialized(method))
