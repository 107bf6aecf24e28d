#!/usr/bin/env python3
# Writes the fixed Confluent byte vectors of runtime/src/format/tests.rs
# (`confluent_serializers_bytes_decode`) with Confluent's own serializers:
#
#   python3 -m venv /tmp/cf && /tmp/cf/bin/pip install 'confluent-kafka[avro,protobuf,schemaregistry]'
#   /tmp/cf/bin/python runtime/tests/data/confluent_vectors.py
#
# Generated with confluent-kafka 2.16.1 (librdkafka 2.16.0), fastavro 1.13.1, protobuf 7.36.2.
# Not run by the tests: its output is pasted into them, so they need no Python.
"""Fixed byte vectors for Brook's AVRO and PROTOBUF tests, written by Confluent's own
serializers (confluent-kafka's AvroSerializer / ProtobufSerializer) against the in-process
mock Schema Registry (`mock://`), whose ids start at 1 as a fresh registry's do."""
import datetime, decimal, json
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.schema_registry.protobuf import ProtobufSerializer
from confluent_kafka.serialization import SerializationContext, MessageField
import confluent_kafka

def avro(schema, value, topic, field=MessageField.VALUE):
    client = SchemaRegistryClient.new_client({"url": "mock://avro-" + topic})
    ser = AvroSerializer(client, json.dumps(schema) if not isinstance(schema, str) else schema)
    return ser(value, SerializationContext(topic, field))

opt = lambda n, t: {"name": n, "type": ["null", t], "default": None}
ALL = {"type": "record", "name": "KsqlDataSourceSchema", "namespace": "io.confluent.ksql.avro_schemas",
       "fields": [opt("B", "boolean"), opt("I", "int"), opt("L", "long"), opt("D", "double"),
                  opt("DEC", {"type": "bytes", "logicalType": "decimal", "precision": 6, "scale": 4}),
                  opt("S", "string"), opt("BY", "bytes"),
                  opt("T", {"type": "int", "logicalType": "time-millis"}),
                  opt("DT", {"type": "int", "logicalType": "date"}),
                  opt("TS", {"type": "long", "logicalType": "timestamp-millis"}),
                  opt("A", {"type": "array", "items": ["null", "int"]}),
                  opt("M", {"type": "map", "values": ["null", "double"]}),
                  opt("ST", {"type": "record", "name": "KsqlDataSourceSchema_ST",
                             "fields": [opt("F0", "int"), opt("lower", "string")]})]}
v = {"B": True, "I": -7, "L": 998877665544332211, "D": 1.5, "DEC": decimal.Decimal("12.3650"),
     "S": "héllo", "BY": b"variations", "T": datetime.time(1, 0, 0),
     "DT": datetime.date(1970, 1, 1) + datetime.timedelta(days=19000),
     "TS": datetime.datetime.fromtimestamp(1_700_000_000, tz=datetime.timezone.utc),
     "A": [1, None, 3], "M": {"a": 1.1, "b": None}, "ST": {"F0": 1, "lower": "x"}}
print("avro_all_types", json.dumps(ALL, separators=(",", ":")))
print("  bytes", avro(ALL, v, "all").hex())
nulls = {f["name"]: None for f in ALL["fields"]}
print("  nulls", avro(ALL, nulls, "nulls").hex())
print("avro_string_key", avro("\"string\"", "foo", "k", MessageField.KEY).hex())
FOREIGN = {"type": "record", "name": "blah", "fields": [
    {"name": "c1", "type": "float"},
    {"name": "Suit", "type": {"type": "enum", "name": "S", "symbols": ["H", "S"]}},
    {"name": "dec", "type": {"type": "bytes", "logicalType": "decimal", "precision": 5, "scale": 3}},
    {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-micros"}},
    {"name": "m", "type": {"type": "array", "items": {"type": "record", "name": "E", "fields": [
        {"name": "key", "type": "string"}, {"name": "value", "type": "int"}]}}},
    {"name": "ignored", "type": "string"}]}
fv = {"c1": 4.0, "Suit": "S", "dec": decimal.Decimal("12.345"),
      "ts": datetime.datetime(1970, 1, 1, 0, 0, 1, 500999, tzinfo=datetime.timezone.utc),
      "m": [{"key": "k", "value": 3}], "ignored": "x"}
print("avro_foreign", json.dumps(FOREIGN, separators=(",", ":")))
print("  bytes", avro(FOREIGN, fv, "foreign").hex())

# PROTOBUF: a message of ksqlDB's shape, built from descriptors (no protoc needed).
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf import timestamp_pb2
from google.type import date_pb2, timeofday_pb2
from confluent_kafka.schema_registry.confluent.type import decimal_pb2

F = descriptor_pb2.FieldDescriptorProto
pool = descriptor_pool.Default()
fd = descriptor_pb2.FileDescriptorProto(name="ksql_vectors.proto", package="", syntax="proto3")
fd.dependency.extend(["google/protobuf/timestamp.proto", "google/type/date.proto",
                      "google/type/timeofday.proto", "confluent/type/decimal.proto"])
other = fd.message_type.add(name="Other")
other.field.add(name="x", number=1, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
m = fd.message_type.add(name="ConnectDefault1")
inner = m.nested_type.add(name="ConnectDefault2")
inner.field.add(name="F0", number=1, type=F.TYPE_INT32, label=F.LABEL_OPTIONAL)
inner.field.add(name="lower", number=2, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
entry = m.nested_type.add(name="MEntry")
entry.options.map_entry = True
entry.field.add(name="key", number=1, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
entry.field.add(name="value", number=2, type=F.TYPE_DOUBLE, label=F.LABEL_OPTIONAL)
for name, num, typ, label, tn in [
        ("I", 1, F.TYPE_INT32, F.LABEL_OPTIONAL, None), ("L", 2, F.TYPE_INT64, F.LABEL_OPTIONAL, None),
        ("D", 3, F.TYPE_DOUBLE, F.LABEL_OPTIONAL, None), ("B", 4, F.TYPE_BOOL, F.LABEL_OPTIONAL, None),
        ("S", 5, F.TYPE_STRING, F.LABEL_OPTIONAL, None), ("BY", 6, F.TYPE_BYTES, F.LABEL_OPTIONAL, None),
        ("A", 7, F.TYPE_INT32, F.LABEL_REPEATED, None),
        ("M", 8, F.TYPE_MESSAGE, F.LABEL_REPEATED, ".ConnectDefault1.MEntry"),
        ("ST", 9, F.TYPE_MESSAGE, F.LABEL_OPTIONAL, ".ConnectDefault1.ConnectDefault2"),
        ("DEC", 10, F.TYPE_MESSAGE, F.LABEL_OPTIONAL, ".confluent.type.Decimal"),
        ("DT", 11, F.TYPE_MESSAGE, F.LABEL_OPTIONAL, ".google.type.Date"),
        ("T", 12, F.TYPE_MESSAGE, F.LABEL_OPTIONAL, ".google.type.TimeOfDay"),
        ("TS", 13, F.TYPE_MESSAGE, F.LABEL_OPTIONAL, ".google.protobuf.Timestamp")]:
    f = m.field.add(name=name, number=num, type=typ, label=label)
    if tn:
        f.type_name = tn
pool.Add(fd)
Msg = message_factory.GetMessageClass(pool.FindMessageTypeByName("ConnectDefault1"))
OtherMsg = message_factory.GetMessageClass(pool.FindMessageTypeByName("Other"))
Inner = message_factory.GetMessageClass(pool.FindMessageTypeByName("ConnectDefault1.ConnectDefault2"))

def proto(msg, topic):
    client = SchemaRegistryClient.new_client({"url": "mock://proto-" + topic})
    ser = ProtobufSerializer(type(msg), client, {"use.deprecated.format": False})
    return ser(msg, SerializationContext(topic, MessageField.VALUE))

msg = Msg(I=-7, L=998877665544332211, D=1.5, B=True, S="héllo", BY=b"variations", A=[1, 0, 3])
msg.M["a"] = 1.1
msg.ST.F0 = 1
msg.ST.lower = "x"
msg.DEC.value = (123650).to_bytes(3, "big", signed=True)
msg.DEC.precision = 6
msg.DEC.scale = 4
dt = datetime.date(1970, 1, 1) + datetime.timedelta(days=19000)
msg.DT.year, msg.DT.month, msg.DT.day = dt.year, dt.month, dt.day
msg.T.hours = 1
msg.TS.seconds = 1_700_000_000
print("protobuf_all_types (message ConnectDefault1, second in its file: index path [1])")
print("  bytes", proto(msg, "pall").hex())
print("protobuf_empty", proto(Msg(), "pempty").hex())
print("protobuf_nested (ConnectDefault1.ConnectDefault2: index path [1, 0])", proto(Inner(F0=5, lower="y"), "pnested").hex())
print("confluent-kafka", confluent_kafka.version(), "librdkafka", confluent_kafka.libversion())
import fastavro, google.protobuf
print("fastavro", fastavro.__version__, "protobuf", google.protobuf.__version__)
