"""The Producer's C path (odradek._hotpath.Accumulator) against the real broker: hostile
arguments change nothing, records too large for the ring are refused whole, headers with
None values and delivery reports round-trip, keyless records stick, and a producer
killed with an open batch (records written into its ring reservation, never committed)
leaves nothing a consumer could read."""
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from odradek.client import OFFSET_BEGINNING, Admin, Consumer, Producer, TopicPartition
from odradek.client.errors import MessageTooLarge
from odradek.client.records import iter_batches
from support.broker import consume_n
from support.records import mapped_segment


def producer(broker, **config):
    return Producer({"socket": broker.socket_path, **config})


def create(broker, name, partitions=1, **configs):
    with Admin(broker.socket_path) as admin:
        admin.create_topic(name, num_partitions=partitions, config=configs)


def read_all(broker, topic, partition, n):
    with Consumer({"socket": broker.socket_path}) as c:
        c.assign([TopicPartition(topic, partition, OFFSET_BEGINNING)])
        recs = consume_n(c, n)
        assert c.poll(0.2) is None
    return recs


def test_hostile_arguments_are_named_type_errors_and_queue_nothing(broker):
    create(broker, "hostile")
    with producer(broker, **{"linger.ms": 0}) as p:
        p.produce("hostile", b"ok")
        for args, kwargs in [((1, b"v"), {}), (("hostile", 5), {}), (("hostile", [b"v"]), {}),
                             (("hostile", b"v"), {"key": object()}), (("hostile", b"v"), {"headers": 7}),
                             (("hostile", b"v"), {"headers": [("h", 1)]}),
                             (("hostile", b"v"), {"headers": [(b"h", b"x")]}),
                             (("hostile", b"v"), {"partition": "0"}), (("hostile", b"v"), {"partition": 0.0}),
                             (("hostile", b"v"), {"timestamp": "now"}), (("hostile", b"v"), {"on_delivery": 1})]:
            with pytest.raises(TypeError):
                p.produce(*args, **kwargs)
        assert p.flush(10) == 0
    assert [r.value() for r in read_all(broker, "hostile", 0, 1)] == [b"ok"]


def test_a_record_larger_than_the_ring_is_refused_whole(broker):
    create(broker, "big")
    with producer(broker, **{"produce.ring.bytes": 65536, "linger.ms": 50}) as p:
        p.produce("big", b"before")
        for size in (40_000, 1 << 20):
            with pytest.raises(MessageTooLarge, match="big-0"):
                p.produce("big", b"x" * size)
        assert len(p) == 1
        p.produce("big", b"y" * 30_000)        # the largest batch a 64 KiB ring takes is 32760 B
        assert p.flush(10) == 0
    assert [len(r.value()) for r in read_all(broker, "big", 0, 2)] == [6, 30_000]


def test_headers_with_none_values_and_delivery_reports_round_trip(broker):
    create(broker, "hdrs")
    reports = []
    with producer(broker, **{"linger.ms": 5}) as p:
        for i in range(300):
            cb = (lambda err, rec: reports.append((err, rec))) if i % 3 == 0 else None
            p.produce("hdrs", "välue-%d" % i, key=bytearray(b"k%d" % i) if i % 2 else None, partition=0,
                      headers={"h": None, "n": b"%d" % i}, timestamp=1_700_000_000_000 - i, on_delivery=cb)
        assert p.flush(10) == 0
    recs = read_all(broker, "hdrs", 0, 300)
    assert [r.value() for r in recs] == [("välue-%d" % i).encode() for i in range(300)]
    assert [r.key() for r in recs] == [b"k%d" % i if i % 2 else None for i in range(300)]
    assert all(r.headers() == [("h", None), ("n", b"%d" % i)] for i, r in enumerate(recs))
    assert [r.timestamp()[1] for r in recs] == [1_700_000_000_000 - i for i in range(300)]
    assert len(reports) == 100 and all(err is None for err, _ in reports)
    by_offset = {rec.offset(): rec for _, rec in reports}
    assert sorted(by_offset) == list(range(0, 300, 3))
    assert by_offset[3].value() == "välue-3".encode() and by_offset[3].key() == b"k3"
    assert by_offset[3].headers() == [("h", None), ("n", b"3")] and by_offset[3].timestamp()[1] == 1_700_000_000_000 - 3


def test_keyless_records_stick_to_a_partition_per_batch(broker):
    create(broker, "spread", partitions=4)
    with producer(broker, **{"linger.ms": 1000, "batch.size": 2000}) as p:
        for _ in range(400):
            p.produce("spread", b"z" * 90)     # ~20 a batch: each full batch moves on
        assert p.flush(10) == 0
    counts = []
    with Consumer({"socket": broker.socket_path}) as c:
        c.assign([TopicPartition("spread", i, OFFSET_BEGINNING) for i in range(4)])
        recs = consume_n(c, 400)
        for i in range(4):
            counts.append(sum(r.partition() == i for r in recs))
    assert sum(counts) == 400 and sum(1 for n in counts if n) >= 2


def test_a_producer_killed_with_an_open_batch_leaves_nothing_partial(broker):
    create(broker, "torn")
    script = textwrap.dedent(f"""
        from odradek.client import Producer
        p = Producer({{"socket": {broker.socket_path!r}, "linger.ms": 600000, "batch.size": 1 << 20}})
        for i in range(50):
            p.produce("torn", b"sent-%d" % i)
        assert p.flush(10) == 0
        for i in range(500):                    # written into the ring reservation, not committed
            p.produce("torn", b"open-%d" % i)
        print("open", len(p), flush=True)
        input()
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert proc.stdout.readline().split() == [b"open", b"500"]
        with producer(broker, **{"linger.ms": 0}) as other:   # another producer goes on meanwhile
            other.produce("torn", b"other-0")
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            other.produce("torn", b"other-1")
            assert other.flush(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    values = [r.value() for r in read_all(broker, "torn", 0, 52)]
    assert values == [b"sent-%d" % i for i in range(50)] + [b"other-0", b"other-1"]


def stored_codecs(broker, topic, partitions):
    """The compression of every batch on disk in `topic`'s partitions."""
    codecs = set()
    for p in range(partitions):
        folder = os.path.join(broker.data_dir, f"{topic}-{p}")
        for name in os.listdir(folder):
            if name.endswith(".log"):
                with mapped_segment(os.path.join(folder, name)) as data:
                    codecs |= {batch.compression.label for _, batch in iter_batches(data)}
    return codecs


@pytest.mark.parametrize("codec,acks", [("gzip", 1), ("gzip", 0), ("snappy", 1), ("lz4", 0), ("zstd", 1)])
def test_compressed_batches_take_the_python_path_with_the_same_semantics(broker, codec, acks):
    create(broker, "zipped", partitions=2)
    reports = []
    config = {"compression.type": codec, "linger.ms": 2, "batch.size": 4096, "acks": acks}
    with producer(broker, **config) as p:
        for i in range(200):
            p.produce("zipped", b"v%d" % i * 20, key=b"k%d" % (i % 5), headers=[("h", None)],
                      on_delivery=lambda err, rec: reports.append((err, rec)))
        with pytest.raises(TypeError, match="value"):
            p.produce("zipped", 5)
        with pytest.raises(MessageTooLarge):
            p.produce("zipped", b"x" * (4 << 20))
        assert p.flush(10) == 0 and len(p) == 0
    assert len(reports) == 200 and all(err is None for err, _ in reports)
    assert all(rec.offset() == -1 for _, rec in reports) if acks == 0 else \
        len({(rec.partition(), rec.offset()) for _, rec in reports}) == 200
    with Consumer({"socket": broker.socket_path}) as c:
        c.assign([TopicPartition("zipped", i, OFFSET_BEGINNING) for i in range(2)])
        recs = consume_n(c, 200)
    assert sorted(r.value() for r in recs) == sorted(b"v%d" % i * 20 for i in range(200))
    assert all(r.headers() == [("h", None)] for r in recs)
    assert stored_codecs(broker, "zipped", 2) == {codec}


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_compressed_batches_stay_within_the_topics_max_message_bytes(broker, codec):
    """A compressed batch closes before it could outgrow what the partition takes (the
    topic's max.message.bytes), as the C path's batches do, even with a larger
    batch.size: no record of it is refused for its batch's size."""
    create(broker, "zipcap", **{"max.message.bytes": "4096"})
    reports = []
    with producer(broker, **{"compression.type": codec, "linger.ms": 50, "batch.size": 65536}) as p:
        for i in range(100):   # incompressible values: a 64 KiB batch would stay near 64 KiB
            p.produce("zipcap", os.urandom(300), partition=0, on_delivery=lambda err, rec: reports.append(err))
        assert p.flush(10) == 0
    assert reports == [None] * 100
