"""Points after scoring: what happens to them in the ledger, one rule per module.

- ``lots.py``        a new lot's expiry day; oldest lots first; debts paid from new earnings first
- ``takeback.py``    points taken back (a return's, a void's), under the program's ``negative_balance``
- ``redemption.py``  spending points under the ``[redemption]`` terms, once per reference
- ``adjustment.py``  manual corrections with a reason
- ``void.py``        a receipt taken out of its customer's history (dated years ahead by mistake)
- ``expiry.py``      when lots are gone: expiry days and inactivity, for a month's close
- ``standing.py``    status, balance and progress to the next tier; statuses at month ends
- ``replay.py``      stored receipts as a batch again, replayed through the kernel

Rules over the ledger's storage: may import ``ledger/``, the engine and below; not jobs or above.
"""
