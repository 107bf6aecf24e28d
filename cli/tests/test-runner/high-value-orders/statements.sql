-- The high-value-orders alert, as a user would test it with ksql-test-runner.
CREATE STREAM orders (orderId STRING KEY, customerId STRING, total DOUBLE, createdAt BIGINT)
  WITH (KAFKA_TOPIC='orders', VALUE_FORMAT='JSON', PARTITIONS=1, TIMESTAMP='createdAt');

CREATE STREAM big_orders AS
  SELECT orderId, customerId, total, UCASE(customerId) AS customer
  FROM orders
  WHERE total > 1000
  EMIT CHANGES;
