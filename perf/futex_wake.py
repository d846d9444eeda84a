"""What does a wake-up cost the waker when nobody sleeps?

    python perf/futex_wake.py [--calls 1000000] [--runs 5]

A doorbell ring and a partition-state publish always end in FUTEX_WAKE (LAYOUT.md,
"Waiting": no waiter flag a peer could clear). This times, on one doorbell and one
partition state that nobody waits on, per call (median of --runs runs, each --calls
calls straight into odradek._native, below the public classes, so that a row is one C
call and the ~50-100 ns of a Python-to-C call is in every row alike). Both live in
anonymous shared memory formatted by the native module itself, as Doorbell.create and
PartitionState.create format their memfds:

    fetch_add       the counter increment alone (what a ring cost with nobody asleep
                    before the change: an increment, a fence and a flag load)
    ring            Doorbell.ring: the increment and FUTEX_WAKE on the shared counter
    futex_wake      FUTEX_WAKE alone on that word
    publish         PartitionState.update's C call: a seqlock write and FUTEX_WAKE

The difference ring - fetch_add is what the always-wake scheme adds to each commit.
"""
import argparse
import mmap
import statistics
import time

from odradek._native import ffi, lib
from odradek.client.shm.doorbell import OFF_COUNTER, SIZE as DOORBELL_SIZE

STATE_BYTES = 1 << 20   # room for the state's header and its 16 descriptor slots


def per_call(fn, arg_tuple, calls):
    t0 = time.perf_counter_ns()
    for _ in range(calls):
        fn(*arg_tuple)
    return (time.perf_counter_ns() - t0) / calls


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    bell_map, state_map = mmap.mmap(-1, DOORBELL_SIZE), mmap.mmap(-1, STATE_BYTES)
    bell = ffi.from_buffer("uint8_t[]", bell_map)
    state = ffi.from_buffer("uint8_t[]", state_map)
    assert lib.odk_doorbell_format(bell, DOORBELL_SIZE) == 0
    assert lib.odk_pstate_format(state, STATE_BYTES, 16) == 0
    counter_word = ffi.cast("uint32_t *", bell + OFF_COUNTER)
    st = ffi.new("odk_pstate *")      # the writer's state: all fields 0
    rows = {
        "fetch_add": (lib.odk_atomic_fetch_add_u32, (bell, OFF_COUNTER, 1)),
        "ring": (lib.odk_doorbell_ring, (bell,)),
        "futex_wake": (lib.odk_futex_wake, (counter_word, 2 ** 31 - 1)),
        "publish": (lib.odk_pstate_publish, (state, st)),
    }
    results = {name: [] for name in rows}
    for _ in range(args.runs):
        for name, (fn, call_args) in rows.items():
            results[name].append(per_call(fn, call_args, args.calls))
    for name, samples in results.items():
        print(f"{name:12s} {statistics.median(samples):7.1f} ns/call")
    print(f"{'ring - fetch_add':16s} {statistics.median(results['ring']) - statistics.median(results['fetch_add']):5.1f} ns: "
          f"what always waking adds to a ring")
    ffi.release(bell)
    ffi.release(state)
    bell_map.close()
    state_map.close()


if __name__ == "__main__":
    main()
