"""The consume-transform-produce processor of the exactly-once kill loop
(test_exactly_once_kills.py): reads topic `in` in group `g` (read_committed, no auto
commit, static member `proc`), and for each batch it polled writes transform(record) to
the same partition of topic `out` and commits the batch's input offsets in one
transaction under the fixed transactional.id `proc`, so that each new instance fences
the previous one. Prints "committed N" (records so far) after each commit, and "done"
once its positions reach `end` on every input partition; then exits 0. Its group
membership's log goes to stdout too (the test counts the waits for a stable offset).
With HOLD (the test's sure mid-transaction kill), the transaction after its first commit
flushes its records (they are in the log) and then prints "holding" and waits on stdin
for the SIGKILL the test sends.

    python eos_processor_child.py SOCKET END_OFFSET SEED [HOLD]
"""
import logging
import random
import sys

from odradek.client import Consumer, Producer

WAIT_S = 30
IN, OUT = "in", "out"


def transform(value):
    """What the processor writes for an input value (the test checks it)."""
    return b"T(" + value + b")"


def main():
    socket, end, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    hold = sys.argv[4:] == ["HOLD"]
    rng = random.Random(seed)
    logging.basicConfig(level=logging.WARNING, stream=sys.stdout, format="%(name)s %(message)s")
    logging.getLogger("odradek.client.group_member").setLevel(logging.INFO)   # the test counts KIP-447 waits
    p = Producer({"socket": socket, "transactional.id": "proc", "transaction.timeout.ms": 20_000, "linger.ms": 1})
    p.init_transactions(WAIT_S)       # fences the killed instance, aborts its open transaction
    c = Consumer({"socket": socket, "group.id": "g", "group.instance.id": "proc", "isolation.level": "read_committed",
                  "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    c.subscribe([IN])
    done = 0
    while True:
        batch = c.consume(num_messages=rng.randint(1, 20), timeout=0.2)
        if not batch:
            positions = c.position(c.assignment())
            # OFFSET_INVALID: nothing returned from it by this instance (confluent-kafka's
            # position()); it starts at its committed offset, the end if an earlier one got there
            unread = [tp for tp in positions if tp.offset < 0]
            if unread:
                positions = [tp for tp in positions if tp.offset >= 0] + c.committed(unread, WAIT_S)
            if len(positions) == 2 and all(tp.offset == end for tp in positions):
                break
            continue
        p.begin_transaction()
        for r in batch:
            p.produce(OUT, transform(r.value()), key=r.key(), partition=r.partition())
        if hold and done:
            p.flush(WAIT_S)              # written, in a transaction that will never end
            print("holding", flush=True)
            sys.stdin.read()             # until the test's SIGKILL
        read = [tp for tp in c.position(c.assignment()) if tp.offset >= 0]
        p.send_offsets_to_transaction(read, c.consumer_group_metadata(), WAIT_S)
        p.commit_transaction(WAIT_S)
        done += len(batch)
        print("committed", done, flush=True)
    print("done", flush=True)
    c.close()
    p.close(WAIT_S)


if __name__ == "__main__":
    main()
