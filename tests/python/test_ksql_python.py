"""Brook driven by ksql-python (PyPI `ksql`), the Python client written for ksqlDB's REST API.

Run by `run.sh`, which starts a fresh brook-server and passes its URL in BROOK_URL. Covers
what a ksql-python user does first: create streams, insert values, run a push query with
LIMIT, run a persistent query, list streams and queries (and PAUSE / RESUME / TERMINATE it).
"""

import collections
import collections.abc
import json
import os
import unittest

# Shim 1: ksql-python imports `hyper` (HTTP/2, for `query2` and `inserts_stream`), whose 0.7.0
# release still imports the ABCs from `collections`; they moved to `collections.abc` and the
# old names were removed in Python 3.10.
for _name in ("Iterable", "Mapping", "MutableMapping", "MutableSet", "Sequence", "Callable"):
    if not hasattr(collections, _name):
        setattr(collections, _name, getattr(collections.abc, _name))

import ksql.api  # noqa: E402
import ksql.utils  # noqa: E402
from ksql import KSQLAPI  # noqa: E402

# Shim 2: ksqlDB answers `INSERT INTO … VALUES` with an empty entity list (`[]`), and
# ksql-python 0.10.2 reads `r_json[0]` of every 200 response, so it raises IndexError there
# with ksqlDB as with Brook. An empty list is a success.
_raise_for_status = ksql.api.BaseAPI._raise_for_status


def _tolerate_empty(r, response):
    if r.getcode() == 200 and json.loads(response) == []:
        return True
    return _raise_for_status(r, response)


ksql.api.BaseAPI._raise_for_status = staticmethod(_tolerate_empty)

URL = os.environ.get("BROOK_URL", "http://127.0.0.1:8088")
EARLIEST = {"ksql.streams.auto.offset.reset": "earliest"}


class KsqlPythonTest(unittest.TestCase):
    maxDiff = None

    @classmethod
    def setUpClass(cls):
        # check_version: the client asks /info for the server's version when it starts.
        cls.client = KSQLAPI(URL, timeout=60)

    def ksql(self, statement):
        return self.client.ksql(statement)

    def push(self, query):
        """A push query with LIMIT, its rows as dicts (ksql-python parses /query's lines)."""
        return list(self.client.query(query, stream_properties=EARLIEST, return_objects=True))

    def queries(self):
        return self.ksql("SHOW QUERIES;")[0]["queries"]

    def test_streams_inserts_push_and_persistent_queries(self):
        self.assertEqual(self.client.get_ksql_version(), "0.1.0")

        # A stream over a new topic (PARTITIONS creates it), then one built by the client's
        # own statement builder over the same topic.
        created = self.ksql(
            "CREATE STREAM pageviews (viewtime BIGINT, userid VARCHAR, pageid VARCHAR) "
            "WITH (kafka_topic='pageviews', value_format='JSON', partitions=1);"
        )
        self.assertEqual(created[0]["@type"], "currentStatus")
        self.assertEqual(created[0]["commandStatus"]["status"], "SUCCESS")
        self.assertEqual(created[0]["commandStatus"]["message"], "Stream created")
        self.assertTrue(
            self.client.create_stream(
                table_name="pageviews_again",
                columns_type=["viewtime bigint", "userid varchar", "pageid varchar"],
                topic="pageviews",
                value_format="JSON",
            )
        )

        for i, (user, page) in enumerate([("u1", "home"), ("u2", "cart"), ("u1", "buy")]):
            self.assertEqual(
                self.ksql(
                    "INSERT INTO pageviews (viewtime, userid, pageid) "
                    f"VALUES ({1000 + i}, '{user}', '{page}');"
                ),
                [],
            )
        # And one row through /inserts-stream (HTTP/2 without TLS, through `hyper`).
        acks = self.client.inserts_stream(
            "pageviews", [{"VIEWTIME": 1003, "USERID": "u3", "PAGEID": "home"}]
        )
        self.assertEqual(acks, [{"status": "ok", "seq": 0}])

        rows = self.push("SELECT * FROM pageviews EMIT CHANGES LIMIT 4;")
        self.assertEqual(
            rows,
            [
                {"VIEWTIME": 1000, "USERID": "u1", "PAGEID": "home"},
                {"VIEWTIME": 1001, "USERID": "u2", "PAGEID": "cart"},
                {"VIEWTIME": 1002, "USERID": "u1", "PAGEID": "buy"},
                {"VIEWTIME": 1003, "USERID": "u3", "PAGEID": "home"},
            ],
        )
        rows = self.push("SELECT pageid FROM pageviews_again WHERE userid = 'u1' EMIT CHANGES LIMIT 2;")
        self.assertEqual(rows, [{"PAGEID": "home"}, {"PAGEID": "buy"}])

        # A persistent query, built by the client (no EMIT CHANGES, as ksql-python writes it).
        self.assertTrue(
            self.client.create_stream_as(
                table_name="u1_views",
                select_columns=["viewtime", "pageid"],
                src_table="pageviews",
                conditions="userid = 'u1'",
                value_format="JSON",
            )
        )
        rows = self.push("SELECT * FROM u1_views EMIT CHANGES LIMIT 2;")
        self.assertEqual(rows, [{"VIEWTIME": 1000, "PAGEID": "home"}, {"VIEWTIME": 1002, "PAGEID": "buy"}])

        # Listing streams: the raw entity, and the client's helper over it.
        listed = self.ksql("SHOW STREAMS;")[0]
        self.assertEqual(listed["@type"], "streams")
        by_name = {s["name"]: s for s in listed["streams"]}
        self.assertEqual(sorted(by_name), ["PAGEVIEWS", "PAGEVIEWS_AGAIN", "U1_VIEWS"])
        self.assertEqual(
            by_name["PAGEVIEWS"],
            {
                "type": "STREAM",
                "name": "PAGEVIEWS",
                "topic": "pageviews",
                "keyFormat": "KAFKA",
                "valueFormat": "JSON",
                "isWindowed": False,
            },
        )
        self.assertEqual(
            sorted(ksql.utils.get_all_streams(self.client)),
            ["PAGEVIEWS", "PAGEVIEWS_AGAIN", "U1_VIEWS"],
        )

        # Listing queries; PAUSE and RESUME show in their state.
        [query] = self.queries()
        self.assertEqual(query["sinks"], ["U1_VIEWS"])
        self.assertEqual(query["sinkKafkaTopics"], ["u1_views"])
        self.assertEqual(query["queryType"], "PERSISTENT")
        self.assertEqual(query["state"], "RUNNING")
        self.assertTrue(query["queryString"].startswith("CREATE stream u1_views"))
        query_id = query["id"]
        paused = self.ksql(f"PAUSE {query_id};")[0]
        self.assertEqual(paused["commandStatus"]["message"], "Query paused.")
        self.assertEqual(self.queries()[0]["state"], "PAUSED")
        self.ksql(f"RESUME {query_id};")
        self.assertEqual(self.queries()[0]["state"], "RUNNING")

        # Errors come back as the client's KSQLError with ksqlDB's error code.
        with self.assertRaises(ksql.errors.KSQLError) as refused:
            self.ksql("SELECT * FROM no_such_stream EMIT CHANGES;")
        self.assertEqual(refused.exception.error_code, 40002)

        # The client's clean-up helper: TERMINATE the writers, then DROP.
        self.ksql(f"TERMINATE {query_id};")
        self.assertEqual(self.queries(), [])
        ksql.utils.drop_stream(self.client, "U1_VIEWS")
        self.assertEqual(
            sorted(ksql.utils.get_all_streams(self.client)), ["PAGEVIEWS", "PAGEVIEWS_AGAIN"]
        )


if __name__ == "__main__":
    unittest.main(verbosity=2)
