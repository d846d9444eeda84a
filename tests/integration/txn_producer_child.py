"""A transactional producer for the crash tests (test_txn_producer.py): initialises,
opens a transaction, writes `count` records to t-0 and waits for their delivery, says
"ready", then waits to be killed (SIGKILL) with its transaction open.

    python txn_producer_child.py SOCKET TRANSACTIONAL_ID TRANSACTION_TIMEOUT_MS COUNT
"""
import sys

from odradek.client import Producer


def main():
    socket, tid, timeout_ms, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    p = Producer({"socket": socket, "transactional.id": tid, "transaction.timeout.ms": timeout_ms})
    p.init_transactions(10)
    p.begin_transaction()
    for i in range(count):
        p.produce("t", b"doomed-%d" % i, partition=0)
    assert p.flush(10) == 0
    print("ready", flush=True)
    sys.stdin.read()     # until killed (or the test closes our stdin)


if __name__ == "__main__":
    main()
