"""Ingest: input files and request bodies read, validated and turned into receipt batches.

- ``files.py``          tabular files in and out: CSV (as text), gzipped CSV, Parquet, msgpack
- ``columns.py``        each receipt column parsed and checked, every bad value located; Arrow helpers
- ``receipts.py``       receipt rows → one :class:`~fidelis.core.batch.ReceiptBatch` + problems
- ``return_rows.py``    return rows validated, and joined to the sales they return
- ``customers.py``      the optional customers file (birth dates, join dates)
- ``msgpack_batch.py``  the columnar msgpack format of tills and the batch endpoint
- ``staging.py``        input larger than memory split by receipt id into parts
- ``fingerprints.py``   a receipt's content hash (what makes a resent receipt a duplicate)

May import the vocabulary modules and ``program/``; not the engine, the ledger or anything above.
"""
