"""The MongoDB sink (`REVERB_LOG_SINK=mongodb`): PyMongo's `AsyncMongoClient`.

One collection (REVERB_MONGODB_DATABASE / REVERB_MONGODB_COLLECTION); each document is
the API's shape with `_id` (the document id) and `ts` (its timestamp, milliseconds as
MongoDB keeps them). Batches are one unordered `insert_many`, so a batch written again
after a timeout skips the documents already stored (duplicate `_id`s). Only what Amazon
DocumentDB also supports is used: compound indexes, `$or`/`$gt`/`$in` filters, sorts,
skip and limit, `delete_many`.
"""

from datetime import datetime
from typing import Any

import orjson
from pymongo import ASCENDING, AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError

from reverb_store.execution.records import ErrorRecord
from reverb_store.logs.documents import LogDocument, read_id, show_id
from reverb_store.logs.queries import LogQuery

# The order of every listing, and the indexes that serve each filter in that order. The
# document id is `_id` and again `id` (indexes name `id`: MongoDB-compatible servers such
# as nx-27017 refuse `_id` inside a compound index).
_ORDER = [("ts", ASCENDING), ("id", ASCENDING)]
INDEXES: tuple[tuple[str, list[tuple[str, int]]], ...] = (
    ("ts_id", _ORDER),
    ("run_ts_id", [("meta.run_id", ASCENDING), *_ORDER]),
    ("level_ts_id", [("level", ASCENDING), *_ORDER]),
    ("kind_ts_id", [("kind", ASCENDING), *_ORDER]),
)
# A duplicate key: the document was stored by an earlier try of the same batch.
_DUPLICATE_KEY = 11000


def _client(url: str) -> AsyncMongoClient[dict[str, Any]]:
    return AsyncMongoClient(url, tz_aware=True, serverSelectionTimeoutMS=5000)


class MongoSink:
    def __init__(self, url: str, database: str, collection: str) -> None:
        self._client = _client(url)
        self._collection: AsyncCollection[dict[str, Any]] = self._client[database][collection]

    async def open(self) -> None:
        """Create the indexes (a no-op when they exist)."""
        for name, keys in INDEXES:
            await self._collection.create_index(keys, name=name)

    async def write(self, documents: list[LogDocument]) -> None:
        try:
            await self._collection.insert_many(
                [to_mongo(document) for document in documents], ordered=False
            )
        except BulkWriteError as error:
            errors = error.details.get("writeErrors", [])
            if any(entry.get("code") != _DUPLICATE_KEY for entry in errors):
                raise

    async def purge(self, older_than: datetime, limit: int) -> int:
        cursor = self._collection.find({"ts": {"$lt": older_than}}, {"_id": 1}).sort(_ORDER)
        ids = [row["_id"] for row in await cursor.limit(limit).to_list(limit)]
        if not ids:
            return 0
        result = await self._collection.delete_many({"_id": {"$in": ids}})
        return int(result.deleted_count)

    async def close(self) -> None:
        await self._client.close()


class MongoLogs:
    """Reads documents for the logs API."""

    def __init__(self, url: str, database: str, collection: str) -> None:
        self._client = _client(url)
        self._collection: AsyncCollection[dict[str, Any]] = self._client[database][collection]

    async def find(self, query: LogQuery) -> list[LogDocument]:
        cursor = self._collection.find(build_filter(query)).sort(_ORDER)
        if query.offset:
            cursor = cursor.skip(query.offset)
        rows = await cursor.limit(query.limit).to_list(query.limit)
        return [from_mongo(row) for row in rows]

    async def close(self) -> None:
        await self._client.close()


def build_filter(query: LogQuery) -> dict[str, Any]:
    clauses: list[dict[str, Any]] = []
    if query.after is not None:
        at, after_id = query.after.timestamp, show_id(query.after.id)
        clauses.append({"$or": [{"ts": {"$gt": at}}, {"ts": at, "id": {"$gt": after_id}}]})
    span: dict[str, Any] = {}
    if query.start is not None:
        span["$gte"] = query.start
    if query.end is not None:
        span["$lt"] = query.end
    if span:
        clauses.append({"ts": span})
    if query.run_id is not None:
        clauses.append({"meta.run_id": query.run_id})
    if query.event_name is not None:
        clauses.append({"meta.event_name": query.event_name})
    levels = query.levels()
    if levels is not None:
        clauses.append({"level": {"$in": list(levels)}})
    if query.kinds is not None:
        clauses.append({"kind": {"$in": list(query.kinds)}})
    if not clauses:
        return {}
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}


def to_mongo(document: LogDocument) -> dict[str, Any]:
    shown = document.to_json()
    meta = shown["meta"]
    row: dict[str, Any] = {
        "_id": shown["id"],
        "id": shown["id"],
        "ts": document.timestamp,
        "level": document.level,
        "kind": document.kind,
        "message": document.message,
        "meta": meta,
        "trace_id": document.trace_id,
        "span_id": document.span_id,
    }
    if "fields" in shown:
        row["fields"] = shown["fields"]
    return row


def from_mongo(row: dict[str, Any]) -> LogDocument:
    meta = row.get("meta") or {}
    error = meta.get("error")
    fields = row.get("fields")
    return LogDocument(
        id=read_id(row["_id"]),
        timestamp=row["ts"],
        level=row["level"],
        kind=row["kind"],
        message=row["message"],
        event_id=meta.get("event_id"),
        event_name=meta.get("event_name"),
        run_id=meta.get("run_id"),
        function_id=meta.get("function_id"),
        step_id=meta.get("step_id"),
        attempt=meta.get("attempt"),
        error=None
        if error is None
        else ErrorRecord(
            str(error.get("type", "")), str(error.get("message", "")), str(error.get("stack", ""))
        ),
        fields=None if fields is None else orjson.dumps(fields).decode(),
        trace_id=row.get("trace_id"),
        span_id=row.get("span_id"),
    )
