"""The gateway's data APIs on the wire (kio entities over one TCP connection): Metadata's
topic ids, Produce's per-partition rules, Fetch (versions, limits, errors, sessions,
the long poll), ListOffsets, OffsetForLeaderEpoch, InitProducerId."""
import os
import select
import struct
import threading
import time

import kio.index
import kio.serial
import pytest
from kio.schema.errors import ErrorCode

from odradek.client import Admin, Producer
from odradek.client.native import crc32c
from odradek.client.records import BatchBuilder, Compression, RecordBatch
from odradek.client.records.compression import compress
from odradek.daemon.gateway.codec import build
from support.broker import BrokerProcess, stop_cleanly, wait_until
from support.gateway import GatewayProcess, KafkaWire

TOPIC = "wire"
QUIET_S = 0.3        # the long poll's quiet window (test_fetch_long_poll_wakes_on_a_record_without_spinning)
CPU_QUIET_S = 0.1


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gwdata")
    broker = BrokerProcess(tmp / "data").start()
    with Admin(broker.socket_path) as admin:
        admin.create_topic(TOPIC, num_partitions=2)
        admin.create_topic("small", num_partitions=1, config={"max.message.bytes": "2000"})
    gw = GatewayProcess(broker.socket_path, tmp).start()
    yield broker, gw
    gw.stop()
    stop_cleanly(broker)


@pytest.fixture
def wire(env):
    with KafkaWire(env[1].port) as w:
        yield w


def req(key, version, **values):
    return build(kio.index.load_request_schema(key, version), values)


def batch(n=1, value=b"v", pid=-1, epoch=-1, seq=-1, transactional=False, ts=1_700_000_000_000):
    b = BatchBuilder(producer_id=pid, producer_epoch=epoch, base_sequence=seq, transactional=transactional)
    for i in range(n):
        b.append(ts + i, b"k%d" % i, value, [("h", b"%d" % i)])
    return b.build()


def produce(wire, records, topic=TOPIC, partition=0, acks=-1, version=9, transactional_id=None):
    r = wire.call(req(0, version, acks=acks, timeout=5000, transactional_id=transactional_id, topic_data=[
        dict(name=topic, partition_data=[dict(index=partition, records=records)])]))
    return r.responses[0].partition_responses[0]


def fetch(wire, offset, topic=TOPIC, partition=0, version=12, max_wait=0, min_bytes=0, max_bytes=1 << 20,
          partition_max_bytes=1 << 20, session_id=0, session_epoch=-1, isolation=0, topic_id=None):
    key = {"topic_id": topic_id} if version >= 13 else {"topic": topic}
    return wire.call(req(1, version, replica_id=-1, max_wait=max_wait, min_bytes=min_bytes, max_bytes=max_bytes,
                         isolation_level=isolation, session_id=session_id, session_epoch=session_epoch,
                         topics=[dict(key, partitions=[dict(partition=partition, fetch_offset=offset,
                                                            current_leader_epoch=-1, last_fetched_epoch=-1,
                                                            log_start_offset=-1,
                                                            partition_max_bytes=partition_max_bytes)])],
                         forgotten_topics_data=[], rack_id=""))


def metadata(wire, topics, version=12):
    cls = kio.index.load_request_schema(3, version)
    if topics is None:     # null: every topic (build() takes lists only)
        return wire.call(cls(topics=None, allow_auto_topic_creation=False, include_topic_authorized_operations=False))
    return wire.call(req(3, version, topics=topics, allow_auto_topic_creation=False,
                         include_topic_authorized_operations=False))


def test_metadata_names_this_broker_and_stable_topic_ids(wire, env):
    m1 = metadata(wire, None)
    names = {t.name: t for t in m1.topics}
    assert {TOPIC, "small"} <= set(names)
    assert [(b.node_id, b.port) for b in m1.brokers] == [(0, env[1].port)]
    t = names[TOPIC]
    assert t.error_code == ErrorCode.none and t.topic_id.int != 0 and not t.is_internal
    assert sorted(p.partition_index for p in t.partitions) == [0, 1]
    assert all(p.leader_id == 0 for p in t.partitions)
    again = metadata(wire, [dict(name=TOPIC, topic_id=t.topic_id)]).topics[0]
    assert again.topic_id == t.topic_id                               # the same id every time
    with KafkaWire(env[1].port) as other:                             # and on another connection
        assert metadata(other, [dict(name=None, topic_id=t.topic_id)], version=12).topics[0].name == TOPIC
    assert {x.name for x in metadata(wire, [], version=0).topics} == set(names)   # v0: empty list = all


def test_metadata_unknown_topics(wire):
    missing = metadata(wire, [dict(name="no-such-topic")]).topics[0]
    assert missing.error_code == ErrorCode.unknown_topic_or_partition
    import uuid
    by_id = metadata(wire, [dict(name=None, topic_id=uuid.uuid4())]).topics[0]
    assert by_id.error_code == ErrorCode.unknown_topic_id


def test_produce_then_fetch_returns_the_batch_byte_for_byte(wire):
    sent = batch(3)
    p = produce(wire, sent, partition=1)
    assert p.error_code == ErrorCode.none and p.base_offset >= 0 and p.log_append_time is None
    f = fetch(wire, p.base_offset, partition=1).responses[0].partitions[0]
    assert f.error_code == ErrorCode.none and f.high_watermark == p.base_offset + 3
    got = bytes(f.records)
    assert int.from_bytes(got[:8], "big") == p.base_offset
    assert got[16:len(sent)] == sent[16:]          # magic, CRC and everything after it unchanged


def _decode(body, api_key, version):
    """(correlation id, response entity) of a response frame's body."""
    cls = kio.index.load_response_schema(api_key, version)
    header, n = kio.serial.entity_reader(cls.__header_schema__)(body, 0)
    return header.correlation_id, kio.serial.entity_reader(cls)(body, n)[0]


def test_produce_requests_sent_back_to_back_are_answered_in_order(wire):
    """Pipelining (server.py): 40 Produce requests in one send, alternating partitions, one
    of them refused, then a Metadata request. Every answer comes in request order; each
    partition's batches got their offsets in request order; the refused one changed
    nothing for the others."""
    bodies, plan = [], []
    wire.send_raw = bodies.append             # collect the frames, then send them at once
    for i in range(40):
        records = batch(1, value=b"v%d" % i) if i != 17 else batch() + batch()      # 17: two batches
        cid = wire.send(req(0, 9, acks=-1, timeout=5000, transactional_id=None, topic_data=[
            dict(name=TOPIC, partition_data=[dict(index=i % 2, records=records)])]))
        plan.append((cid, i % 2))
    meta_cid = wire.send(req(3, 12, topics=[dict(name=TOPIC)], allow_auto_topic_creation=False,
                             include_topic_authorized_operations=False))
    del wire.send_raw
    wire.sock.sendall(b"".join(len(b).to_bytes(4, "big") + b for b in bodies))
    last = {0: None, 1: None}
    for i, (cid, partition) in enumerate(plan):
        got_cid, r = _decode(wire.receive_raw(), 0, 9)
        assert got_cid == cid
        part = r.responses[0].partition_responses[0]
        if i == 17:
            assert part.error_code == ErrorCode.invalid_record
            continue
        assert part.error_code == ErrorCode.none
        if last[partition] is not None:
            assert part.base_offset == last[partition] + 1       # request order, nothing between
        last[partition] = part.base_offset
    got_cid, meta = _decode(wire.receive_raw(), 3, 12)
    assert got_cid == meta_cid and meta.topics[0].name == TOPIC
    f = fetch(wire, last[1], partition=1).responses[0].partitions[0]
    assert f.high_watermark == last[1] + 1 and b"v39" in bytes(f.records)


@pytest.mark.parametrize("version", [4, 11, 12, 13, 16, 18])
def test_fetch_versions_name_topics_and_carry_records(wire, version):
    base = produce(wire, batch(2)).base_offset
    topic_id = metadata(wire, [dict(name=TOPIC)]).topics[0].topic_id
    r = fetch(wire, base, version=version, topic_id=topic_id)
    t = r.responses[0]
    assert (t.topic_id == topic_id) if version >= 13 else (t.topic == TOPIC)
    part = t.partitions[0]
    assert part.error_code == ErrorCode.none and int.from_bytes(bytes(part.records)[:8], "big") == base


def test_produce_refuses_what_kafka_refuses(wire, env):
    assert produce(wire, batch() + batch()).error_code == ErrorCode.invalid_record       # two batches
    magic1 = bytearray(batch())
    magic1[16] = 1
    assert produce(wire, bytes(magic1)).error_code == ErrorCode.invalid_record
    assert produce(wire, b"short").error_code == ErrorCode.corrupt_message
    assert produce(wire, batch(), topic="nope").error_code == ErrorCode.unknown_topic_or_partition
    assert produce(wire, batch(), partition=9).error_code == ErrorCode.unknown_topic_or_partition
    assert produce(wire, batch(value=b"x" * 5000), topic="small").error_code == ErrorCode.message_too_large
    txn = batch(pid=1, epoch=0, seq=0, transactional=True)
    assert produce(wire, txn).error_code == ErrorCode.transactional_id_authorization_failed
    assert produce(wire, batch(), acks=2).error_code == ErrorCode.invalid_required_acks


def _records_replaced(records_region, codec=0):
    """batch() with its records region replaced (and the header's length, codec and CRC
    made to fit): a batch whose CRC holds over bytes that are no records."""
    data = bytearray(batch())
    data[61:] = records_region
    struct.pack_into(">i", data, 8, len(data) - 12)
    struct.pack_into(">h", data, 21, codec)
    struct.pack_into(">I", data, 17, crc32c(bytes(data[21:])))
    return bytes(data)


def test_produce_refuses_batches_whose_records_do_not_decode(wire):
    """As Kafka's LogValidator, the leader reads every record (decompressed) before it
    stores a batch: INVALID_RECORD, the log unchanged, the next good batch lands next."""
    before = produce(wire, batch()).base_offset
    assert produce(wire, _records_replaced(b"\xff" * 12)).error_code == ErrorCode.invalid_record
    assert produce(wire, _records_replaced(b"not lz4 at all", codec=3)).error_code == ErrorCode.invalid_record
    garbage_inside = compress(Compression.ZSTD, b"\x40" + bytes(10))
    assert produce(wire, _records_replaced(garbage_inside, codec=4)).error_code == ErrorCode.invalid_record
    good = produce(wire, batch(3))
    assert (good.error_code, good.base_offset) == (ErrorCode.none, before + 1)
    f = fetch(wire, before).responses[0].partitions[0]
    assert f.high_watermark == before + 4
    first = RecordBatch(bytes(f.records))
    assert [r.value for r in first.records()] == [b"v"]
    assert [r.value for r in RecordBatch(bytes(f.records)[first.size:]).records()] == [b"v"] * 3


def test_acks_zero_gets_no_response(wire):
    hw = fetch(wire, 0).responses[0].partitions[0].high_watermark
    wire.send(req(0, 9, acks=0, timeout=5000, transactional_id=None, topic_data=[
        dict(name=TOPIC, partition_data=[dict(index=0, records=batch(4))])]))
    # each answer that follows on the connection is a Fetch's (KafkaWire checks the
    # correlation id): none came for acks=0, and its records were written
    wait_until(lambda: fetch(wire, 0).responses[0].partitions[0].high_watermark == hw + 4, timeout=10,
               what="the acks=0 batch")


def test_acks_zero_refused_closes_the_connection(env):
    """Kafka's way to tell an acks=0 producer its batch was refused."""
    with KafkaWire(env[1].port) as wire:
        wire.send(req(0, 9, acks=0, timeout=5000, transactional_id=None, topic_data=[
            dict(name="no-such-topic", partition_data=[dict(index=0, records=batch(1))])]))
        assert wire.receive_raw() is None


def test_idempotent_producer_sequence_is_checked_by_the_leader(wire):
    init = wire.call(req(22, 4, transactional_id=None, transaction_timeout=60000, producer_id=-1,
                         producer_epoch=-1))
    assert init.error_code == ErrorCode.none and init.producer_id >= 0
    first = produce(wire, batch(2, pid=init.producer_id, epoch=init.producer_epoch, seq=0))
    again = produce(wire, batch(2, pid=init.producer_id, epoch=init.producer_epoch, seq=0))   # a retry
    assert first.error_code == ErrorCode.none
    assert again.error_code in (ErrorCode.none, ErrorCode.duplicate_sequence_number)
    assert again.base_offset in (first.base_offset, -1)
    gap = produce(wire, batch(1, pid=init.producer_id, epoch=init.producer_epoch, seq=7))
    assert gap.error_code == ErrorCode.out_of_order_sequence_number


def test_fetch_errors_and_limits(wire):
    base = produce(wire, batch(1, value=b"a" * 3000)).base_offset
    produce(wire, batch(1, value=b"b" * 3000))
    hw = base + 2
    assert fetch(wire, hw + 5).responses[0].partitions[0].error_code == ErrorCode.offset_out_of_range
    at_hw = fetch(wire, hw).responses[0].partitions[0]
    assert at_hw.error_code == ErrorCode.none and not at_hw.records
    one = fetch(wire, base, max_bytes=10).responses[0].partitions[0]      # at least one batch (KIP-74)
    assert one.records and int.from_bytes(bytes(one.records)[8:12], "big") + 12 == len(one.records)
    two = fetch(wire, base, max_bytes=1 << 20).responses[0].partitions[0]
    assert len(two.records) > len(one.records)


def test_fetch_answers_carry_what_kafkas_carry(wire):
    """As Apache Kafka 4.4 answers (checked against it): aborted_transactions null for
    read_uncommitted, an array for read_committed; a partition answered with an error has
    its offsets -1 and aborted_transactions null."""
    base = produce(wire, batch()).base_offset
    uncommitted = fetch(wire, base).responses[0].partitions[0]
    committed = fetch(wire, base, isolation=1).responses[0].partitions[0]
    assert uncommitted.records and uncommitted.aborted_transactions is None
    assert committed.records and committed.aborted_transactions == ()
    assert uncommitted.high_watermark == committed.high_watermark > base
    for isolation in (0, 1):
        out = fetch(wire, 10 ** 9, isolation=isolation).responses[0].partitions[0]
        assert out.error_code == ErrorCode.offset_out_of_range
        assert (out.high_watermark, out.last_stable_offset, out.log_start_offset, out.aborted_transactions) == \
            (-1, -1, -1, None)


def test_fetch_long_poll_wakes_on_a_record_without_spinning(wire, env):
    """A Fetch with min_bytes=1 and nothing to read waits (no answer, no CPU) and is
    answered as soon as a record comes, not at its max_wait. The quiet window is the thing
    under test: how much CPU the waiting gateway takes, which only a stretch of waiting
    shows, and that nothing answers the fetch early; QUIET_S is the shortest in which a
    polling gateway would burn several times CPU_QUIET_S. Twice on one connection: the
    second wait is on the first's WaitSet (the connection's Sleeper), with new values."""
    broker, gw = env
    fetch_cls = kio.index.load_request_schema(1, 12)
    for value in (b"late", b"later"):
        hw = fetch(wire, 0).responses[0].partitions[0].high_watermark
        cpu = _cpu_seconds(gw.proc.pid)
        wire.send(req(1, 12, replica_id=-1, max_wait=10_000, min_bytes=1, max_bytes=1 << 20, isolation_level=0,
                      session_id=0, session_epoch=-1, topics=[dict(topic=TOPIC, partitions=[dict(
                          partition=0, fetch_offset=hw, current_leader_epoch=-1, last_fetched_epoch=-1,
                          log_start_offset=-1, partition_max_bytes=1 << 20)])], forgotten_topics_data=[],
                      rack_id=""))
        readable, _, _ = select.select([wire.sock], [], [], QUIET_S)
        assert not readable, "the fetch was answered with nothing to read"
        assert _cpu_seconds(gw.proc.pid) - cpu < CPU_QUIET_S     # asleep on the partition state, not polling
        with Producer({"socket": broker.socket_path, "linger.ms": 0}) as p:
            p.produce(TOPIC, value, partition=0)
            assert p.flush(10) == 0
        sent = time.monotonic()
        r = wire.receive(fetch_cls).responses[0].partitions[0]
        assert value in r.records and time.monotonic() - sent < 2.0     # woken by the record, not at max_wait


def test_fetch_long_poll_ends_at_max_wait(wire):
    hw = fetch(wire, 0, partition=1).responses[0].partitions[0].high_watermark
    start = time.monotonic()
    r = fetch(wire, hw, partition=1, max_wait=300, min_bytes=1).responses[0].partitions[0]
    assert not r.records and 0.25 < time.monotonic() - start < 3


def test_fetch_sessions_on_the_wire(wire):
    hw = fetch(wire, 0).responses[0].partitions[0].high_watermark
    full = fetch(wire, hw, session_id=0, session_epoch=0)
    assert full.error_code == ErrorCode.none and full.session_id > 0 and len(full.responses) == 1
    sid = full.session_id
    quiet = wire.call(req(1, 12, replica_id=-1, max_wait=0, min_bytes=0, max_bytes=1 << 20, isolation_level=0,
                          session_id=sid, session_epoch=1, topics=[], forgotten_topics_data=[], rack_id=""))
    assert quiet.error_code == ErrorCode.none and quiet.session_id == sid and quiet.responses == ()
    produce(wire, batch(1))
    news = wire.call(req(1, 12, replica_id=-1, max_wait=0, min_bytes=0, max_bytes=1 << 20, isolation_level=0,
                         session_id=sid, session_epoch=2, topics=[], forgotten_topics_data=[], rack_id=""))
    (part,) = news.responses[0].partitions                  # the partition left out: unchanged, fetched at hw
    assert part.records and part.high_watermark == hw + 1
    assert fetch(wire, hw, session_id=sid, session_epoch=2).error_code == ErrorCode.invalid_fetch_session_epoch
    assert fetch(wire, hw, session_id=sid + 1, session_epoch=1).error_code == \
        ErrorCode.fetch_session_id_not_found


def test_list_offsets_and_offset_for_leader_epoch(wire):
    produce(wire, batch(1))
    hw = fetch(wire, 0).responses[0].partitions[0].high_watermark

    def offset_of(ts, version=7):
        r = wire.call(req(2, version, replica_id=-1, isolation_level=0, timeout=5000, topics=[
            dict(name=TOPIC, partitions=[dict(partition_index=0, current_leader_epoch=-1, timestamp=ts)])]))
        return r.topics[0].partitions[0]
    assert offset_of(-2).offset == 0 and offset_of(-1).offset == hw
    assert offset_of(-4, version=8).offset == 0
    assert offset_of(-5, version=9).error_code == ErrorCode.unsupported_version
    assert offset_of(1_700_000_000_000).offset == 0
    epoch = offset_of(-1).leader_epoch
    r = wire.call(req(23, 4, replica_id=-1, topics=[dict(topic=TOPIC, partitions=[
        dict(partition=0, current_leader_epoch=-1, leader_epoch=epoch)])]))
    p = r.topics[0].partitions[0]
    assert (p.error_code, p.leader_epoch, p.end_offset) == (ErrorCode.none, epoch, hw)
    r = wire.call(req(23, 4, replica_id=-1, topics=[dict(topic="nope", partitions=[
        dict(partition=0, current_leader_epoch=-1, leader_epoch=0)])]))
    assert r.topics[0].partitions[0].error_code == ErrorCode.unknown_topic_or_partition
    late_ts = int(time.time() * 1000) + 1_800_000             # the newest yet (within the hour allowed ahead)
    late = produce(wire, batch(1, ts=late_ts)).base_offset
    produce(wire, batch(1))                                   # an older timestamp after it
    newest = offset_of(-3)
    assert (newest.offset, newest.timestamp) == (late, late_ts)


def _cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_read_committed_stops_at_an_open_transaction(wire, env):
    broker, _ = env
    with Admin(broker.socket_path) as admin:
        admin.create_topic("txn-open", num_partitions=1)
    produce(wire, batch(2), topic="txn-open")
    with Producer({"socket": broker.socket_path, "transactional.id": "wire-open"}) as p:
        p.init_transactions()
        p.begin_transaction()
        p.produce("txn-open", b"undecided", partition=0)
        assert p.flush(10) == 0
        committed = fetch(wire, 0, topic="txn-open", isolation=1).responses[0].partitions[0]
        uncommitted = fetch(wire, 0, topic="txn-open", isolation=0).responses[0].partitions[0]
        assert committed.last_stable_offset == 2 and committed.high_watermark == 3
        assert len(committed.records) < len(uncommitted.records)     # the open transaction's batch is held back
        p.abort_transaction()
    def decided():     # the ABORT marker is written after abort_transaction() returns
        part = fetch(wire, 0, topic="txn-open", isolation=1).responses[0].partitions[0]
        return part if part.last_stable_offset == part.high_watermark == 4 else None
    after = wait_until(decided, timeout=10, what="the abort marker")
    assert [a.first_offset for a in after.aborted_transactions] == [2]


def test_produce_refuses_record_timestamps_kafka_4_refuses(wire, env):
    """message.timestamp.after.max.ms (Kafka 4's default: one hour) and before.max.ms (no
    limit by default): INVALID_TIMESTAMP for a record further from the broker's clock, in
    an uncompressed or a compressed batch, the log unchanged; a LogAppendTime topic takes
    any (the broker stamps it)."""
    now = int(time.time() * 1000)
    future = now + 2 * 3600 * 1000
    before = produce(wire, batch()).base_offset
    for codec in (Compression.NONE, Compression.GZIP):
        b = BatchBuilder(compression=codec)
        b.append(now, b"k", b"v")
        b.append(future, b"k", b"v")
        p = produce(wire, b.build())
        assert (p.error_code, p.base_offset) == (ErrorCode.invalid_timestamp, -1), codec
    assert produce(wire, batch(ts=now - 10 * 365 * 86400 * 1000)).base_offset == before + 1   # no past limit
    broker, _ = env
    with Admin(broker.socket_path) as admin:
        admin.create_topic("stamped-here", num_partitions=1, config={"message.timestamp.type": "LogAppendTime"})
        admin.create_topic("near-only", num_partitions=1, config={"message.timestamp.before.max.ms": "60000"})
    assert produce(wire, batch(ts=future), topic="stamped-here").error_code == ErrorCode.none
    assert produce(wire, batch(ts=now - 3_600_000), topic="near-only").error_code == ErrorCode.invalid_timestamp
    assert produce(wire, batch(ts=now), topic="near-only").error_code == ErrorCode.none


def test_log_append_time_topics_answer_the_time_the_leader_gave(wire, env):
    broker, _ = env
    with Admin(broker.socket_path) as admin:
        admin.create_topic("appended", num_partitions=1, config={"message.timestamp.type": "LogAppendTime"})
    before = time.time()
    p = produce(wire, batch(2, ts=1_000), topic="appended")
    assert p.error_code == ErrorCode.none and p.log_append_time is not None
    assert before - 5 < p.log_append_time.timestamp() < time.time() + 5
    got = bytes(fetch(wire, p.base_offset, topic="appended").responses[0].partitions[0].records)
    assert int.from_bytes(got[35:43], "big") == round(p.log_append_time.timestamp() * 1000)   # maxTimestamp
    assert produce(wire, batch(1)).log_append_time is None                                    # CreateTime topic


def test_produce_v13_names_topics_by_id(wire):
    topic_id = metadata(wire, [dict(name=TOPIC)]).topics[0].topic_id
    r = wire.call(req(0, 13, acks=-1, timeout=5000, transactional_id=None, topic_data=[
        dict(topic_id=topic_id, partition_data=[dict(index=1, records=batch(1))])]))
    assert r.responses[0].topic_id == topic_id
    assert r.responses[0].partition_responses[0].error_code == ErrorCode.none
    import uuid
    r = wire.call(req(0, 13, acks=-1, timeout=5000, transactional_id=None, topic_data=[
        dict(topic_id=uuid.uuid4(), partition_data=[dict(index=0, records=batch(1))])]))
    assert r.responses[0].partition_responses[0].error_code == ErrorCode.unknown_topic_id


def test_connections_sharing_a_ring_each_get_their_own_completions(env):
    """Clients without a producer id share one ring per partition and acks: each
    connection's answer carries the offset of its own batch."""
    gw = env[1]
    results, failures = [], []

    def client(k):
        try:
            with KafkaWire(gw.port) as w:
                for i in range(40):
                    n = 1 + (k + i) % 3
                    p = produce(w, batch(n, value=b"c%d-%d" % (k, i)), acks=1)
                    assert p.error_code == ErrorCode.none
                    results.append((p.base_offset, n, b"c%d-%d" % (k, i)))
        except BaseException as e:
            failures.append(e)
    threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not failures and len(results) == 160
    with KafkaWire(gw.port) as w:
        for base, n, value in results:
            got = bytes(fetch(w, base, max_bytes=1).responses[0].partitions[0].records)
            assert int.from_bytes(got[:8], "big") == base and value in got
            assert int.from_bytes(got[57:61], "big") == n          # recordsCount: this batch, no other


def test_fetch_answers_leave_at_once(wire):
    """A Fetch answer goes out in parts (bytes, sendfile, bytes): without TCP_NODELAY the
    last part waited for the client's delayed ACK, 40 ms a fetch."""
    base = produce(wire, batch(1)).base_offset
    took = []
    for _ in range(15):
        start = time.monotonic()
        assert fetch(wire, base).responses[0].partitions[0].records
        took.append(time.monotonic() - start)
    assert sorted(took)[len(took) // 2] < 0.02


def test_init_producer_id_with_a_transactional_id_fences_the_previous_epoch(wire):
    def init(version=4):
        return wire.call(req(22, version, transactional_id="wire-tx", transaction_timeout=60000, producer_id=-1,
                             producer_epoch=-1))
    first = init()
    assert first.error_code == ErrorCode.none and first.producer_id >= 0
    # CONCURRENT_TRANSACTIONS is retriable while the coordinator settles the previous epoch
    second = wait_until(lambda: (lambda r: r if r.error_code != ErrorCode.concurrent_transactions else None)(
        init(version=0)), timeout=10, what="InitProducerId")
    assert second.error_code == ErrorCode.none
    assert (second.producer_id, second.producer_epoch) == (first.producer_id, first.producer_epoch + 1)


def test_fetch_checks_the_clients_leader_epoch_against_metadatas(wire):
    """Clients send Metadata's leader_epoch as current_leader_epoch (KIP-320): the same
    epoch is served, a newer one is UNKNOWN_LEADER_EPOCH (an older, FENCED_LEADER_EPOCH)."""
    epoch = next(p.leader_epoch for p in metadata(wire, [dict(name=TOPIC)]).topics[0].partitions
                 if p.partition_index == 0)

    def fetch_at(leader_epoch):
        return wire.call(req(1, 12, replica_id=-1, max_wait=0, min_bytes=0, max_bytes=1 << 20, isolation_level=0,
                             session_id=0, session_epoch=-1, topics=[dict(topic=TOPIC, partitions=[dict(
                                 partition=0, fetch_offset=0, current_leader_epoch=leader_epoch,
                                 last_fetched_epoch=-1, log_start_offset=-1, partition_max_bytes=1 << 20)])],
                             forgotten_topics_data=[], rack_id="")).responses[0].partitions[0].error_code
    assert fetch_at(epoch) == ErrorCode.none
    assert fetch_at(epoch + 1) == ErrorCode.unknown_leader_epoch
    assert fetch_at(-1) == ErrorCode.none                    # -1: not checked
