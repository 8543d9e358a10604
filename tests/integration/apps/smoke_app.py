"""A minimal faust-streaming worker for the smoke test: Avro in, a RocksDB table out.

It decodes Confluent-framed Avro with confluent-kafka's own deserializer (so the test
also proves interoperability with the registry), counts records per key in a table
stored by RocksDB through rocksdict, and serves the table on GET /count/{key}.
"""

from __future__ import annotations

import os

import faust
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

NAME = os.environ["SMOKE_APP"]
TOPIC = os.environ["SMOKE_TOPIC"]

app = faust.App(
    NAME,
    broker=f"kafka://{os.environ['STREAMS_KAFKA_BOOTSTRAP']}",
    store="rocksdb://",
    datadir=os.environ["SMOKE_DATADIR"],
    web_port=int(os.environ["SMOKE_WEB_PORT"]),
    web_bind="127.0.0.1",
    topic_partitions=1,
    consumer_auto_offset_reset="earliest",
)
source = app.topic(TOPIC, key_serializer="raw", value_serializer="raw", partitions=1)
counts = app.Table("counts", default=int, partitions=1, options={"driver": "rocksdict"})
last_value = app.Table("last_value", default=str, partitions=1, options={"driver": "rocksdict"})
deserialize = AvroDeserializer(SchemaRegistryClient({"url": os.environ["STREAMS_SCHEMA_REGISTRY_URL"]}))


@app.agent(source)
async def consume(stream: faust.StreamT[bytes]) -> None:
    async for event in stream.events():
        key = event.key.decode()
        record = deserialize(event.value, SerializationContext(TOPIC, MessageField.VALUE))
        counts[key] += 1
        last_value[key] = record["sku"]


@app.page("/count/{key}")
@app.table_route(table=counts, match_info="key")
async def get_count(web: faust.web.View, request: faust.web.Request, key: str) -> faust.web.Response:
    return web.json({"count": counts[key], "sku": last_value[key]})


if __name__ == "__main__":
    app.main()
