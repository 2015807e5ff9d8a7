"""Customer partitions: how receipts are split so that the parts score independently.

A customer's state is read and written only by that customer's receipts, so receipts split
by customer score apart — on threads of one process, in a bulk load's scratch partitions, on
other machines — with exactly the results of one pass. This module is the split as Python
sees it; the kernel's threads split customers by the same rule, compiled with the same
:data:`PARTITION_BLOCK_BITS` (``_kernel.PARTITION_BLOCK_BITS``; tests/test_types.py holds the
two equal, as it does the code maps).

A partition owns blocks of ``2**PARTITION_BLOCK_BITS`` consecutive customer indices: four
48-byte state records are three whole cache lines, so two threads never write to the same
line. Anonymous receipts touch no state and belong to partition 0.
"""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # the kernel module loads the compiled extension; this one must not
    from .kernel import PreparedBatch

#: A partition owns blocks of ``2**PARTITION_BLOCK_BITS`` consecutive customer indices.
PARTITION_BLOCK_BITS = 2


def customer_partition(customer_index: np.ndarray, part_count: int) -> np.ndarray:
    """The partition (0 … part_count − 1) of each receipt's customer; anonymous receipts go to 0."""
    if part_count < 1:
        raise ValueError(f"part_count must be at least 1, not {part_count}")
    customer_index = np.asarray(customer_index)
    return np.where(customer_index < 0, 0, (customer_index >> PARTITION_BLOCK_BITS) % part_count)


def partition(prepared: PreparedBatch, part_count: int) -> list[PreparedBatch]:
    """Split a prepared batch by customer partition, each part in processing order.

    No customer is in two parts, so the parts can be scored concurrently against one state (or
    on different machines, each with its customers' state) with exactly the results of one pass.
    """
    part_of = customer_partition(prepared.customer_index, part_count)
    parts = []
    for part in range(part_count):
        receipts = np.flatnonzero(part_of == part)
        parts.append(dataclasses.replace(
            prepared, batch=prepared.batch.take(receipts), customer_index=prepared.customer_index[receipts]
        ))
    return parts
