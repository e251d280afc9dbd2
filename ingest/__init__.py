"""Exports of real systems -> the contract tables (`churn ingest`).

A mapping file (ingest/mapping.py) says where each table comes from: any contract table from a
CSV, Parquet or SQL source through a column map (ingest/tables.py, with the value conversions of
ingest/values.py), daily usage from a product analytics event stream (ingest/events.py, streamed
by ingest/stream.py), and help desks or billing through their own connectors (ingest/zendesk.py,
ingest/intercom.py, ingest/stripe.py). ingest/run.py reads every section, validates the tables
against core.contracts and writes a data folder, all or nothing. Readers (ingest/sources.py,
ingest/stream.py) are kept apart from the pure mappers.
"""
