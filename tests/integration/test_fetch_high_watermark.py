"""A consumer reading through GetSegment (its position older than the partition's batch
descriptor window) is handed the segment's bytes up to the leader's log end or its
current high watermark, which may reach past the high watermark the consumer read in
the partition state: the batches past that are not committed as far as this fetch knows,
and must be neither delivered nor reported as damaged (they were, as CorruptRecord
"damaged baseOffset", e.g. to a consumer reading across a leader restart)."""
import os
import signal

from integration.test_replication import status_of
from odradek.client import Admin, Consumer, Producer, TopicPartition
from odradek.client.consumer import OFFSET_BEGINNING
from support.broker import consume_n


def test_a_fetch_through_get_segment_stops_quietly_at_the_high_watermark(three_dirs, start):
    _, _, config = three_dirs
    with open(config, "a") as f:
        f.write("fetch.descriptor.slots = 2\n")   # offset 0 is soon out of the window: GetSegment
    broker = start()
    with Admin(broker.socket_path) as admin:
        admin.create_topic("t", 1, replication_factor=2)
    with Producer({"socket": broker.socket_path, "acks": "all"}) as p:
        for i in range(10):
            p.produce("t", b"%d" % i, partition=0)
            assert p.flush(10) == 0   # one batch each
    _, followers = status_of(broker, "t")
    (pid,) = followers.values()
    os.kill(pid, signal.SIGSTOP)   # the follower the broker we started forked
    c = Consumer({"socket": broker.socket_path})
    try:
        with Producer({"socket": broker.socket_path, "acks": 1}) as p:
            p.produce("t", b"uncommitted", partition=0)
            assert p.flush(10) == 0   # appended at offset 10, above the high watermark (10)
        c.assign([TopicPartition("t", 0, OFFSET_BEGINNING)])
        assert [r.value() for r in consume_n(c, 10)] == [b"%d" % i for i in range(10)]
        assert c.consume(1, 0.3) == []
    finally:
        os.kill(pid, signal.SIGCONT)
    try:
        assert [r.value() for r in consume_n(c, 1)] == [b"uncommitted"]   # once the follower has it
    finally:
        c.close()
