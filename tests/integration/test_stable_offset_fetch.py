"""KIP-447 against a real broker: a read_committed group member whose committed offset an
open transaction holds waits for that transaction to end (OffsetFetch with require_stable,
retried on UNSTABLE_OFFSET_COMMIT), then starts from the offset the transaction committed,
instead of falling back to auto.offset.reset and reading again what was processed."""
import logging
import threading

from odradek.client import Admin, Consumer, GroupMetadata, Producer, TopicPartition
from support.broker import wait_until

WAIT_S = 15


def test_a_read_committed_member_starts_from_the_offset_an_open_transaction_commits(broker, caplog):
    with Admin(broker.socket_path) as admin:
        admin.create_topic("t", 1)
    with Producer({"socket": broker.socket_path, "linger.ms": 1}) as plain:
        for i in range(10):
            plain.produce("t", b"%d" % i, partition=0)
        assert plain.flush(WAIT_S) == 0
    caplog.set_level(logging.INFO, logger="odradek.client.group_member")
    p = Producer({"socket": broker.socket_path, "transactional.id": "app", "linger.ms": 1})
    c = Consumer({"socket": broker.socket_path, "group.id": "g", "isolation.level": "read_committed",
                  "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    try:
        p.init_transactions(WAIT_S)
        p.begin_transaction()
        p.send_offsets_to_transaction([TopicPartition("t", 0, 6)], GroupMetadata("g", -1, "", None), WAIT_S)
        c.subscribe(["t"])
        got = []
        reader = threading.Thread(target=lambda: got.extend(c.consume(1, WAIT_S)))
        reader.start()
        wait_until(lambda: any("; asking again in " in r.getMessage() for r in caplog.records), WAIT_S,
                   what="the member told the offset is unstable")     # fetch_committed's log line
        p.commit_transaction(WAIT_S)
        reader.join(WAIT_S + 5)
        assert not reader.is_alive()
        assert [(r.offset, r.value) for r in got] == [(6, b"6")]
    finally:
        c.close()
        p.close(WAIT_S)
