"""Points after scoring: lots, take-back, redemption, expiry, standing, whole-history replay.

- ``replay.py``  stored receipts as a batch again, to replay through the kernel

Rules over the ledger's storage: may import ``ledger/``, the engine and below; not jobs or above.
"""
