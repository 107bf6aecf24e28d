"""ksql-python against a brook-server with TLS and HTTP Basic logins (docs/security.md, API).

Run by `run.sh`, which starts the server with `--tls-cert/--tls-key/--users` and passes its
https:// URL in BROOK_URL, the user in BROOK_USER and BROOK_PASSWORD, and the test CA in
SSL_CERT_FILE (urllib) and REQUESTS_CA_BUNDLE (requests), as a ksql-python user trusting a
private CA would. The client's `api_key`/`secret` are its Basic credentials.
"""

import base64
import json
import os
import unittest
import urllib.error
import urllib.request

from test_ksql_python import KSQLAPI, EARLIEST, ksql  # the shims, applied once

URL = os.environ["BROOK_URL"]
USER = os.environ["BROOK_USER"]
PASSWORD = os.environ["BROOK_PASSWORD"]


class KsqlPythonHttpsTest(unittest.TestCase):
    maxDiff = None

    def test_logged_in_statements_and_push_query_over_https(self):
        self.assertTrue(URL.startswith("https://"), URL)
        # check_version: /info, through `requests`, with the credentials.
        client = KSQLAPI(URL, timeout=60, api_key=USER, secret=PASSWORD)
        self.assertEqual(client.get_ksql_version(), "0.1.0")
        created = client.ksql(
            "CREATE STREAM secured_views (viewtime BIGINT, userid VARCHAR) "
            "WITH (kafka_topic='secured_views', value_format='JSON', partitions=1);"
        )
        self.assertEqual(created[0]["commandStatus"]["message"], "Stream created")
        for i, user in enumerate(["u1", "u2"]):
            client.ksql(f"INSERT INTO secured_views (viewtime, userid) VALUES ({i}, '{user}');")
        rows = list(
            client.query(
                "SELECT * FROM secured_views EMIT CHANGES LIMIT 2;",
                stream_properties=EARLIEST,
                return_objects=True,
            )
        )
        self.assertEqual(rows, [{"VIEWTIME": 0, "USERID": "u1"}, {"VIEWTIME": 1, "USERID": "u2"}])

    def test_wrong_or_missing_credentials_get_401(self):
        for key, secret in [(USER, "not-the-password"), ("nobody", PASSWORD), (None, None)]:
            client = KSQLAPI(URL, timeout=60, api_key=key, secret=secret, check_version=False)
            with self.assertRaises(ksql.errors.KSQLError) as refused:
                client.ksql("SHOW STREAMS;")
            self.assertEqual(refused.exception.error_code, 40100, (key, secret))
            self.assertEqual(refused.exception.msg, "Unauthorized")

    def test_a_text_plain_post_gets_415(self):
        # What a cross-site form could send: refused even with the right credentials.
        token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        req = urllib.request.Request(
            url=f"{URL}/ksql",
            data=json.dumps({"ksql": "SHOW STREAMS;"}).encode(),
            headers={"Content-Type": "text/plain", "Authorization": f"Basic {token}"},
            method="POST",
        )
        with self.assertRaises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(req, timeout=60)
        self.assertEqual(refused.exception.code, 415)
        self.assertEqual(json.loads(refused.exception.read())["error_code"], 41500)


if __name__ == "__main__":
    unittest.main(verbosity=2)
