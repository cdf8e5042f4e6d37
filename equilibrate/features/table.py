"""Archive rows (Arrow columns) to the feature engine's event columns, with no object per row.

The batch paths (rebuild, point-in-time training data) read millions of archived events; building
a validated Transaction for each costs more than everything else they do. Archived rows were
validated on the way in, so here whole columns are converted at once, with exactly the arithmetic
of `state.to_arrays` (a test keeps the two equal).
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from equilibrate.features.state import EventArrays, coded_events
from equilibrate.schema import Category, Direction, Status

#: The archive columns this conversion reads.
EVENT_COLUMNS = ("customer_id", "ts", "amount", "direction", "category", "status", "balance_after")


def _codes(column: pa.ChunkedArray | pa.Array, enum: type[StrEnum]) -> npt.NDArray[np.int64]:
    """Each value's position in `enum` (the archive holds only valid values)."""
    encoded = pc.dictionary_encode(column)
    if isinstance(encoded, pa.ChunkedArray):
        encoded = encoded.combine_chunks()
    position = {v.value: i for i, v in enumerate(enum)}
    lookup = np.array([position[str(v)] for v in encoded.dictionary.to_pylist()] or [0], dtype=np.int64)
    codes: npt.NDArray[np.int64] = lookup[encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)]
    return codes


def table_events(table: pa.Table, customer_index: dict[str, int]) -> tuple[EventArrays, list[str]]:
    """The table's events as columns; `cust` indexes `customer_index`, which grows with new ids.

    Returns the events and the ids added to the index (in order of their new positions).
    """
    ids = table.column("customer_id")
    encoded = pc.dictionary_encode(ids).combine_chunks() if table.num_rows else None
    added: list[str] = []
    if encoded is None:
        cust = np.zeros(0, dtype=np.int64)
    else:
        names: Sequence[str] = encoded.dictionary.to_pylist()
        positions = np.empty(len(names), dtype=np.int64)
        for j, name in enumerate(names):
            pos = customer_index.get(name)
            if pos is None:
                pos = customer_index[name] = len(customer_index)
                added.append(name)
            positions[j] = pos
        cust = positions[encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)]
    ms = table.column("ts").cast(pa.int64()).to_numpy().astype(np.int64)
    events = coded_events(
        cust,
        ms,
        table.column("amount").to_numpy(),
        bal_p=np.rint(table.column("balance_after").to_numpy() * 100).astype(np.int64),
        direction=_codes(table.column("direction"), Direction),
        category=_codes(table.column("category"), Category),
        status=_codes(table.column("status"), Status),
    )
    return events, added
