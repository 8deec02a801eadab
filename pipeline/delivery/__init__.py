"""Delivery: transports, the exactly-once dispatcher, suppressions, webhook and reports."""
