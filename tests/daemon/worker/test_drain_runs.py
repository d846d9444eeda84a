"""ProducerAttachment.drain_runs (daemon/worker/producers.py) on real rings: consecutive
entries that may be appended together reach append_run as one run, in order; what may
not (a transactional batch, another producer's, a sequence that does not follow) goes
alone through drain; a run append_run declines goes one by one, each answered; the
budget, RUN_ENTRIES and the completion space bound what is taken; one wake-up a round."""
import os

import pytest

from odradek.client.errors import CorruptRecord
from odradek.client.protocol import messages as m
from odradek.client.records import BatchBuilder
from odradek.client.shm import Doorbell, Ring
from odradek.daemon.worker.producers import RUN_ENTRIES, ProducerAttachment

PRODUCER_ID, EPOCH = 7, 0


def batch(i, records=1, producer_id=-1, seq=-1, transactional=False):
    b = BatchBuilder(producer_id=producer_id, producer_epoch=EPOCH if producer_id >= 0 else -1,
                     base_sequence=seq, transactional=transactional)
    for r in range(records):
        b.append(1_000 + i, None, b"value %d.%d" % (i, r))
    return bytes(b.build())


def attachment(producer_id=-1, ring_bytes=1 << 16, completion_bytes=1 << 16):
    requests, req_fd = Ring.create(ring_bytes)
    completions, comp_fd = Ring.create(completion_bytes)
    bell, bell_fd = Doorbell.create()
    request = m.OpenProducerRequest(topic="t", partition=0, acks=1, producer_id=producer_id,
                                    producer_epoch=EPOCH if producer_id >= 0 else -1)
    att = ProducerAttachment(1, request, [req_fd, comp_fd, bell_fd])
    for fd in (req_fd, comp_fd, bell_fd):
        os.close(fd)
    return att, requests, completions, bell


@pytest.fixture
def plain():
    att, requests, completions, bell = attachment()
    yield att, requests, bell
    att.close()
    for thing in (requests, completions, bell):
        thing.close()


@pytest.fixture
def idempotent():
    att, requests, completions, bell = attachment(PRODUCER_ID)
    yield att, requests, bell
    att.close()
    for thing in (requests, completions, bell):
        thing.close()


class Log:
    """Offsets in order, as the leader gives them; which calls came, with how many batches."""

    def __init__(self, take_runs=True, refuse=()):
        self.next = 0
        self.calls = []
        self.take_runs = take_runs
        self.refuse = set(refuse)   # batch values (first record's) the one-by-one append refuses

    def append(self, view, header):
        assert isinstance(view, memoryview) and len(view) == header.batch_length + 12
        key = header.base_timestamp - 1_000
        self.calls.append(("one", key))
        if key in self.refuse:
            raise CorruptRecord(f"batch {key} refused")
        first, self.next = self.next, self.next + header.last_offset_delta + 1
        return first

    def append_run(self, run):
        self.calls.append(("run", [h.base_timestamp - 1_000 for _, h in run]))
        for view, header in run:
            assert bytes(view[:8]) == bytes(8) and len(view) == header.batch_length + 12
        if not self.take_runs:
            return None
        bases = []
        for _, header in run:
            bases.append(self.next)
            self.next += header.last_offset_delta + 1
        return bases


def completions_of(att, n):
    got = [att.completions.read_completion() for _ in range(n)]
    return [(c.base_offset, c.error_code) for c in got]


def test_consecutive_entries_are_one_run_in_order_and_wake_the_producer_once(plain):
    att, requests, bell = plain
    for i in range(5):
        requests.write(batch(i, records=i + 1))
    before = bell.value
    log = Log()
    assert att.drain_runs(log.append, log.append_run, 100) == (5, False)
    assert log.calls == [("run", [0, 1, 2, 3, 4])]
    assert completions_of(att, 5) == [(0, 0), (1, 0), (3, 0), (6, 0), (10, 0)]
    assert bell.value == before + 1
    assert requests.free == requests.capacity   # every entry's space given back
    assert att.drain_runs(log.append, log.append_run, 100) == (0, False)
    assert bell.value == before + 1              # a round with nothing to complete wakes nobody


def test_a_run_append_run_declines_goes_one_by_one_each_answered(plain):
    att, requests, bell = plain
    for i in range(4):
        requests.write(batch(i))
    log = Log(take_runs=False, refuse={2})
    assert att.drain_runs(log.append, log.append_run, 100) == (4, False)
    assert log.calls == [("run", [0, 1, 2, 3]), ("one", 0), ("one", 1), ("one", 2), ("one", 3)]
    assert completions_of(att, 4) == [(0, 0), (1, 0), (-1, CorruptRecord.code), (2, 0)]
    assert requests.free == requests.capacity


def test_an_entry_that_cannot_join_goes_alone_between_runs(idempotent):
    att, requests, _ = idempotent
    seqs = [0, 1, 2, 7, 8, 9]                     # a gap before 7: a new run starts there
    for i, seq in enumerate(seqs):
        requests.write(batch(i, producer_id=PRODUCER_ID, seq=seq))
    requests.write(batch(6, producer_id=PRODUCER_ID, seq=10, transactional=True))   # alone
    requests.write(batch(7, producer_id=PRODUCER_ID, seq=11))                       # alone: a run of one
    log = Log()
    assert att.drain_runs(log.append, log.append_run, 100) == (8, False)
    assert log.calls == [("run", [0, 1, 2]), ("run", [3, 4, 5]), ("one", 6), ("one", 7)]
    assert [base for base, _ in completions_of(att, 8)] == list(range(8))


def test_another_producers_batch_is_not_in_a_run(plain):
    att, requests, _ = plain
    requests.write(batch(0))
    requests.write(batch(1, producer_id=PRODUCER_ID, seq=0))   # not this ring's producer: drain refuses it
    requests.write(batch(2))
    requests.write(batch(3))
    log = Log()
    assert att.drain_runs(log.append, log.append_run, 100) == (4, False)
    assert log.calls == [("one", 0), ("run", [2, 3])]
    got = completions_of(att, 4)
    assert got[0] == (0, 0) and got[1][0] == -1 and got[1][1] != 0 and got[2:] == [(1, 0), (2, 0)]


def test_budget_and_run_length_bound_what_is_taken(plain):
    att, requests, _ = plain
    for i in range(RUN_ENTRIES + 10):
        requests.write(batch(i))
    log = Log()
    assert att.drain_runs(log.append, log.append_run, 5) == (5, False)
    assert log.calls == [("run", [0, 1, 2, 3, 4])]
    assert att.drain_runs(log.append, log.append_run, 1000) == (RUN_ENTRIES + 5, False)
    assert [len(keys) for _, keys in log.calls[1:]] == [RUN_ENTRIES, 5]
    assert [base for base, _ in completions_of(att, RUN_ENTRIES + 10)] == list(range(RUN_ENTRIES + 10))


def test_no_entry_is_taken_without_room_for_its_completion(plain):
    att, requests, _ = plain
    for i in range(6):
        requests.write(batch(i))
    # a producer that stopped reading its completions: room left for three of them
    from odradek.daemon.worker.producers import _COMPLETION_ENTRY
    filler = 0
    while att.completions.free >= 4 * _COMPLETION_ENTRY:
        att.completions.write_completion(10_000 + filler, 0, 0)
        filler += 1
    log = Log()
    # an entry is taken only while its completion, those of the run before it and one
    # more fit (drain's rule): two here
    assert att.drain_runs(log.append, log.append_run, 100) == (2, True)
    assert log.calls == [("run", [0, 1])]
    for _ in range(filler):                          # the producer reads again
        att.completions.read_completion()
    assert att.drain_runs(log.append, log.append_run, 100) == (4, False)
    assert log.calls[1:] == [("run", [2, 3, 4, 5])]
    assert [base for base, _ in completions_of(att, 6)] == list(range(6))


def test_a_run_stops_once_it_holds_run_bytes():
    from odradek.daemon.worker.producers import RUN_BYTES
    att, requests, completions, bell = attachment(ring_bytes=1 << 23)
    try:
        records = RUN_BYTES // 3 // 1000 + 2      # a batch a little over a third of RUN_BYTES
        for i in range(7):
            b = BatchBuilder()
            for r in range(records):
                b.append(1_000 + i, None, b"x" * 1000)
            requests.write(bytes(b.build()))
        log = Log()
        assert att.drain_runs(log.append, log.append_run, 100) == (7, False)
        assert [keys for _, keys in log.calls] == [[0, 1, 2], [3, 4, 5], 6]
    finally:
        att.close()
        for thing in (requests, completions, bell):
            thing.close()
