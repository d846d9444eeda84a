"""odradek.client.shm: the shared-memory structures producers, consumers and partition
workers map together. Byte layouts, ordering rules, crash behaviour: LAYOUT.md here.

    Ring            SPSC byte ring: produce requests (producer -> leader worker) and
                    completions (worker -> producer)
    Doorbell        a futex-backed counter: one sleeper, many ringers
    PartitionState  a partition's offsets (seqlock) and its recent batch descriptors
    WaitSet         sleep on several of their futex words at once (futex_waitv)

All memory is memfd (nothing named, nothing to leak), created sealed and passed as a
file descriptor; what readers must not change is sealed against writes for everyone. Needs odradek._native (atomics and futexes are C; see shm.c).
"""
from odradek.client.shm._memfd import readonly_fd
from odradek.client.shm.doorbell import Doorbell
from odradek.client.errors import (BadLayout, NotInWindow, RingFull, SealUnsupported, ShmCorrupt,
                                   TornState)
from odradek.client.shm.partition_state import (BatchDescriptor, PartitionSnapshot,
                                                PartitionState, PartitionStateFds)
from odradek.client.shm.ring import Completion, Ring
from odradek.client.shm.waiting import WaitSet, wait_for_any

__all__ = ["Ring", "Completion", "Doorbell", "PartitionState", "PartitionStateFds",
           "PartitionSnapshot", "BatchDescriptor", "readonly_fd", "WaitSet", "wait_for_any",
           "TornState", "ShmCorrupt", "RingFull", "NotInWindow", "BadLayout", "SealUnsupported"]
