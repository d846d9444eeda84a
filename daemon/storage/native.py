"""The storage-only native functions' Python face: the C ones (odradek._native through
_native_cffi.py) when the client's native module uses C, else their pure-Python
reference (_native_ref.py). ODRADEK_PURE=1 forces the reference for both.

    from odradek.daemon.storage import native
    native.index_lookup(index_map, entries, relative_offset)   # slot, or -1
    native.timeindex_lookup(timeindex_map, entries, timestamp)  # slot, or entries
    st = native.append_state(segment_base=0, index_interval=4096, max_batch_size=1 << 20)
    native.append(batches, log_map, index_map, timeindex_map, st)  # Status; st advanced
    target = native.append_target(log_map, index_map, timeindex_map)  # bound once per segment
    native.append_into(batches, target, st)  # the same, ~1.5 us less glue
    native.append_in_place(length, target, st)  # the same for bytes already pwritten at st.position
    native.append_check(batches, target, st)  # a follower's: validate in place, no copy;
    native.append_commit(batches, target, st) # after writing them at st.position: index
    native.prefault(target, start, end)      # a background thread faults those pages in
    native.release_target(target)            # before closing the maps
    expect = native.expect_buffer(st, 64)    # room for 64 batch headers, st's expectation:
    HEADER_STRUCT.pack_into(expect, 0, *header); st.expect_count = 1   # the next append's
                                             # copy must hold exactly that header (else CHANGED)

Status, BatchInfo, scan_batches and the rest shared with clients: odradek.client.native.
Used only by the daemon's storage (segment.py, offset_index.py, time_index.py).
"""
from odradek.client import native as _client

__all__ = ["index_lookup", "timeindex_lookup", "append", "append_state", "AppendState",
           "APPEND_STATE_FIELDS", "append_target", "append_into", "release_target", "prefault",
           "append_fields_reader", "append_call", "append_check", "append_commit", "append_in_place",
           "expect_buffer", "IMPLEMENTATION"]

IMPLEMENTATION = _client.IMPLEMENTATION

if IMPLEMENTATION == "c":
    from odradek.daemon.storage._native_cffi import (  # noqa: F401
        APPEND_STATE_FIELDS, AppendState, append, append_call, append_check, append_commit, append_in_place,
        append_fields_reader, append_into, append_state, append_target, expect_buffer, index_lookup, prefault,
        release_target, timeindex_lookup)
else:
    from odradek.daemon.storage._native_ref import (  # noqa: F401
        APPEND_STATE_FIELDS, AppendState, append, append_call, append_check, append_commit, append_in_place,
        append_fields_reader, append_into, append_state, append_target, expect_buffer, index_lookup, prefault,
        release_target, timeindex_lookup)
