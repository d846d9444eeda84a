"""Consumer groups against the real broker: sharing partitions, ownership that never
overlaps, a member SIGKILLed, a member too slow for max.poll.interval.ms, committed
offsets across a broker restart, static membership, cooperative-sticky, partitions
added, and the two delivery patterns (at-most-once, at-least-once).

Consumers that must die run in subprocesses (CONSUMER below) and write what they see, one
JSON line per event, to a file: their callbacks (with the generation and a
CLOCK_MONOTONIC time, which every process on the host shares) and each record handled."""
import json
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from odradek.client import (OFFSET_BEGINNING, OFFSET_INVALID, Admin, Consumer, MaxPollIntervalExceeded,
                            OffsetAndMetadata, Producer, TopicPartition)
from support.broker import wait_until

FAST = {"heartbeat.interval.ms": 100, "session.timeout.ms": 6000, "auto.offset.reset": "earliest"}


def create(broker, name, partitions):
    with Admin(broker.socket_path) as admin:
        admin.create_topic(name, num_partitions=partitions)


def produce(broker, topic, n, partitions, start=0):
    with Producer({"socket": broker.socket_path, "linger.ms": 1}) as p:
        for i in range(start, start + n):
            p.produce(topic, b"v%d" % i, partition=i % partitions)
        assert p.flush(10) == 0


def consumer(broker, **config):
    return Consumer({"socket": broker.socket_path, **FAST, **config})


class Recorder:
    """on_assign/on_revoke/on_lost that log (time, name, kind, generation, partitions)."""

    def __init__(self, events, name):
        self.events, self.name = events, name

    def _cb(self, kind):
        def cb(c, parts):
            self.events.append((time.monotonic(), self.name, kind, c.group_metadata().generation_id,
                                sorted((tp.topic, tp.partition) for tp in parts)))
        return cb

    def subscribe(self, c, topics):
        c.subscribe(topics, on_assign=self._cb("assign"), on_revoke=self._cb("revoke"), on_lost=self._cb("lost"))
        return c


def replay_ownership(events):
    """Replay ownership events in time order; fail if a partition is given to a member
    while another holds it (a 'killed' event ends everything its member held)."""
    owner = {}
    for _, name, kind, gen, parts in sorted(events):
        if kind == "killed":
            for tp in [tp for tp, who in owner.items() if who == name]:
                del owner[tp]
            continue
        for tp in map(tuple, parts):
            if kind == "assign":
                assert owner.get(tp) in (None, name), \
                    f"{tp} given to {name} (generation {gen}) while {owner[tp]} has it"
                owner[tp] = name
            else:
                assert owner.get(tp) == name, f"{name} gave up {tp}, which it did not hold"
                del owner[tp]
    return owner


def poll_all(consumers, until, timeout=15.0, what="the group", on_records=None):
    deadline = time.monotonic() + timeout
    while not until():
        assert time.monotonic() < deadline, f"timed out waiting for {what}: " + "; ".join(
            f"{sorted(c.assignment())}" for c in consumers)
        for c in consumers:
            recs = c.consume(100, 0.02)
            if on_records is not None:
                on_records(c, recs)


def owned(c):
    return {(tp.topic, tp.partition) for tp in c.assignment()}


# ---- consumers in subprocesses ---------------------------------------------------------

CONSUMER = textwrap.dedent("""
    import json, signal, sys, threading, time
    from odradek.client import Consumer
    args = json.loads(sys.argv[1])
    out = open(args["out"], "a", buffering=1)
    name = args["name"]
    def emit(**kv):
        out.write(json.dumps(dict(kv, t=time.monotonic(), name=name)) + "\\n")
    def cb(kind):
        return lambda c, parts: emit(ev=kind, gen=c.group_metadata().generation_id,
                                     parts=sorted([tp.topic, tp.partition] for tp in parts))
    stop = []
    signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
    c = Consumer(args["config"])
    c.subscribe(args["topics"], on_assign=cb("assign"), on_revoke=cb("revoke"), on_lost=cb("lost"))
    emit(ev="ready")
    while not stop:
        for r in c.consume(20, 0.1):
            if r.offset() >= args.get("hang_at", float("inf")):
                emit(ev="hung", p=r.partition(), o=r.offset())
                threading.Event().wait()               # a handler that never returns: killed here
            emit(ev="rec", p=r.partition(), o=r.offset())  # handled: auto commit may count it now
    c.close()
    emit(ev="closed")
""")


class Proc:
    def __init__(self, broker, tmp_path, name, topics, **config):
        self.name = name
        self.out = str(tmp_path / f"{name}.jsonl")
        args = {"out": self.out, "name": name, "topics": topics, "config": {"socket": broker.socket_path, **FAST}}
        if "hang_at" in config:
            args["hang_at"] = config.pop("hang_at")
        args["config"].update(config)
        self.proc = subprocess.Popen([sys.executable, "-c", CONSUMER, json.dumps(args)])
        self.killed_at = None

    def events(self):
        try:
            with open(self.out) as f:
                return [json.loads(line) for line in f if line.endswith("\n")]
        except FileNotFoundError:
            return []

    def owned(self):
        held = set()
        for e in self.events():
            if e["ev"] == "assign":
                held |= {tuple(p) for p in e["parts"]}
            elif e["ev"] in ("revoke", "lost"):
                held -= {tuple(p) for p in e["parts"]}
        return held

    def records(self):
        return [(e["p"], e["o"]) for e in self.events() if e["ev"] == "rec"]

    def kill(self):
        self.killed_at = time.monotonic()
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode


# ---- tests ------------------------------------------------------------------------------

def test_three_members_share_six_partitions_and_a_sigkilled_members_partitions_move(broker, tmp_path):
    create(broker, "orders", 6)
    conf = {"group.id": "billing", "auto.commit.interval.ms": 100}
    # the victim's handler hangs at offset 150 (mid-way through the second 600 records)
    procs = [Proc(broker, tmp_path, f"c{i}", ["orders"], **conf, **({"hang_at": 150} if i == 2 else {}))
             for i in range(3)]
    try:
        # one generation in which each of the three holds two partitions
        wait_until(lambda: [len(p.owned()) for p in procs] == [2, 2, 2], 20, 0.02, "2 partitions each")
        t_stable = time.monotonic()
        victim = procs[2]
        moved = victim.owned()
        produce(broker, "orders", 600, 6)
        with Admin(broker.socket_path) as admin:     # the victim auto-committed all it handled
            wait_until(lambda: all(admin.list_group_offsets("billing").get(tp, (0,))[0] == 100 for tp in moved),
                       10, 0.01, "the victim's commit of offset 100")
        produce(broker, "orders", 600, 6, start=600)
        wait_until(lambda: any(e["ev"] == "hung" for e in victim.events()), 10, 0.01, "the victim to hang")
        victim.kill()
        survivors = procs[:2]
        wait_until(lambda: set().union(*(p.owned() for p in survivors)) == {("orders", i) for i in range(6)},
                   10, 0.005, "the victim's partitions to move")
        took = time.monotonic() - victim.killed_at

        def all_handled():
            seen = set().union(*(set(p.records()) for p in procs))
            return all((p, o) in seen for p in range(6) for o in range(200))
        wait_until(all_handled, 20, 0.05, "every record to be handled")
        for p in survivors:
            assert p.stop() == 0
    finally:
        for p in procs:
            if p.proc.poll() is None:
                p.proc.kill()
                p.proc.wait(5)

    events = []
    for p in procs:
        for e in p.events():
            if e["ev"] in ("assign", "revoke", "lost"):
                events.append((e["t"], p.name, e["ev"], e["gen"], [tuple(x) for x in e["parts"]]))
    events.append((victim.killed_at, victim.name, "killed", -1, []))
    replay_ownership(events)                    # never two owners at once, in any generation
    # the same check per generation: the assignments of one generation are disjoint
    by_gen = {}
    for _, name, kind, gen, parts in events:
        if kind == "assign":
            for tp in parts:
                assert by_gen.setdefault((gen, tp), name) == name, f"{tp} in generation {gen} twice"
    # the stable generation before the kill had 2 + 2 + 2
    assert len(moved) == 2 and took < 2.0, f"the victim's partitions moved after {took:.2f} s"
    # at-least-once: no record skipped; the survivors resumed the victim's partitions at
    # its committed offsets (not from the beginning), repeating at most what followed them
    victim_seen = {}
    for part, off in victim.records():
        victim_seen.setdefault(part, []).append(off)
    for _, part in moved:
        firsts = [min(o for p, o in s.records() if p == part and o >= 0) for s in survivors
                  if any(p == part for p, _ in s.records())]
        first = min(firsts)
        assert first <= max(victim_seen.get(part, [-1])) + 1        # no gap
    assert any(min((o for s in survivors for p, o in s.records() if p == part), default=0) > 0
               for _, part in moved), "the new owners started over instead of at the committed offsets"
    print(f"\nrebalance after SIGKILL: partitions moved {took * 1000:.0f} ms after the kill; "
          f"group of 3 stable {t_stable - min(e[0] for e in events):.2f} s after the first assignment")


def test_slow_member_exceeding_max_poll_interval_is_removed_and_told(broker):
    create(broker, "slow", 4)
    events = []
    slow = Recorder(events, "slow").subscribe(consumer(broker, **{"group.id": "g", "max.poll.interval.ms": 1000}),
                                             ["slow"])
    fast = Recorder(events, "fast").subscribe(consumer(broker, **{"group.id": "g"}), ["slow"])
    try:
        poll_all([slow, fast], lambda: len(owned(slow)) == 2 and len(owned(fast)) == 2 and
                 slow.group_metadata().generation_id == fast.group_metadata().generation_id)
        # the slow one "processes" from its last poll on, without polling; its interval runs
        # from that poll's start (taken after t0, so the move comes at least 1 s after t0)
        t0 = time.monotonic()
        slow.poll(0)
        poll_all([fast], lambda: len(owned(fast)) == 4, what="the slow member's partitions to move")
        took = time.monotonic() - t0
        assert 1.0 <= took < 3.0
        with pytest.raises(MaxPollIntervalExceeded) as err:    # the poll wakes at the news
            slow.poll(10)
        msg = str(err.value)
        assert "max.poll.interval.ms exceeded: processing between polls took" in msg
        assert "reduce the work per poll or raise max.poll.interval.ms" in msg
        assert owned(slow) == set() and events[-1][1:3] == ("slow", "lost")
        # the poll after that rejoins
        poll_all([slow, fast], lambda: len(owned(slow)) == 2 and len(owned(fast)) == 2, what="the rejoin")
        # the contract of max.poll.interval.ms: a member that stops polling may lose its
        # partitions from then on, and hears so (on_lost) at its next poll
        lost = [e for e in events if e[2] == "lost"]
        replay_ownership([e for e in events if e not in lost] + [(t0, "slow", "killed", -1, [])])
    finally:
        slow.close()
        fast.close()


def test_committed_offsets_and_metadata_survive_a_broker_restart(broker):
    create(broker, "ledger", 2)
    produce(broker, "ledger", 100, 2)
    c = consumer(broker, **{"group.id": "acct", "enable.auto.commit": False})
    c.subscribe(["ledger"])
    got = []
    poll_all([c], lambda: len(got) >= 30, on_records=lambda _, recs: got.extend(recs))
    c.commit(offsets=[TopicPartition("ledger", 0, 17), OffsetAndMetadata("ledger", 1, 23, "batch-9")],
             metadata="batch-8")
    c.close()

    broker.stop()
    broker.start()

    c = consumer(broker, **{"group.id": "acct", "enable.auto.commit": False})
    try:
        got = c.committed([TopicPartition("ledger", 0), TopicPartition("ledger", 1)])
        assert got == [TopicPartition("ledger", 0, 17), TopicPartition("ledger", 1, 23)]
        assert [g.metadata for g in got] == ["batch-8", "batch-9"]
        c.subscribe(["ledger"])
        firsts = {}
        poll_all([c], lambda: len(firsts) == 2,
                 on_records=lambda _, recs: [firsts.setdefault(r.partition(), r.offset()) for r in recs])
        assert firsts == {0: 17, 1: 23}
        assert c.committed([TopicPartition("ledger", 0), TopicPartition("nope", 0)])[1].offset == OFFSET_INVALID
    finally:
        c.close()


def test_static_member_restart_within_the_session_timeout_causes_no_rebalance(broker):
    create(broker, "static", 4)
    events = []
    a = Recorder(events, "a").subscribe(consumer(broker, **{"group.id": "s", "group.instance.id": "a"}), ["static"])
    b = Recorder(events, "b").subscribe(consumer(broker, **{"group.id": "s"}), ["static"])
    try:
        poll_all([a, b], lambda: len(owned(a)) == 2 and len(owned(b)) == 2 and
                 a.group_metadata().generation_id == b.group_metadata().generation_id)
        generation, a_had = b.group_metadata().generation_id, owned(a)
        a.close()                                   # a static member does not leave...
        n = len(events)
        a = Recorder(events, "a").subscribe(consumer(broker, **{"group.id": "s", "group.instance.id": "a"}),
                                            ["static"])
        poll_all([a, b], lambda: owned(a) == a_had, what="a to come back")   # ...and gets its partitions back
        with Admin(broker.socket_path) as admin:    # no rebalance under way: b has nothing to hear
            assert admin.describe_group("s").state == "Stable"
        for c in (a, b):
            c.poll(0.05)
        assert b.group_metadata().generation_id == generation == a.group_metadata().generation_id
        assert [e for e in events[n:] if e[1] == "b"] == []          # b never heard of it
        assert owned(b) and len(owned(b)) == 2
    finally:
        a.close()
        b.close()


def test_cooperative_sticky_never_revokes_partitions_that_stay(broker):
    create(broker, "coop", 6)
    events, consumers = [], []
    conf = {"group.id": "c", "partition.assignment.strategy": "cooperative-sticky"}
    try:
        a = Recorder(events, "a").subscribe(consumer(broker, **conf), ["coop"])
        consumers.append(a)
        poll_all(consumers, lambda: len(owned(a)) == 6)
        produce(broker, "coop", 600, 6)
        seen = {}
        record = lambda c, recs: seen.setdefault(id(c), []).extend((r.partition(), r.offset()) for r in recs)  # noqa
        for name in ("b", "c"):
            consumers.append(Recorder(events, name).subscribe(consumer(broker, **conf), ["coop"]))
            poll_all(consumers, lambda: sorted(len(owned(c)) for c in consumers) == [6 // len(consumers)] *
                     len(consumers) and len({c.group_metadata().generation_id for c in consumers}) == 1,
                     on_records=record)
        replay_ownership(events)
        for name, c in zip("abc", consumers):
            mine = [e for e in events if e[1] == name]
            revoked = {tp for e in mine if e[2] == "revoke" for tp in e[4]}
            assert not revoked & owned(c), f"{name} had partitions it kept revoked"
            gained = [set(e[4]) for e in mine if e[2] == "assign"]
            assert all(not (g1 & g2) for i, g1 in enumerate(gained) for g2 in gained[i + 1:])
        assert not [e for e in events if e[2] == "lost"]
    finally:
        for c in consumers:
            c.close()


def test_partitions_added_and_new_topics_matching_a_regex_are_picked_up(broker):
    create(broker, "grow", 2)
    create(broker, "events-a", 1)
    conf = {"group.id": "grow", "metadata.max.age.ms": 200}
    a, b = consumer(broker, **conf), consumer(broker, **conf)
    r = consumer(broker, **{"group.id": "rx", "metadata.max.age.ms": 200})
    try:
        a.subscribe(["grow"])
        b.subscribe(["grow"])
        r.subscribe("^events-.*")
        poll_all([a, b, r], lambda: len(owned(a) | owned(b)) == 2 and owned(r) == {("events-a", 0)})
        with Admin(broker.socket_path) as admin:
            admin.create_partitions("grow", 4)
        create(broker, "events-b", 2)
        create(broker, "other", 1)
        poll_all([a, b, r], lambda: len(owned(a)) == 2 and len(owned(b)) == 2 and
                 owned(r) == {("events-a", 0), ("events-b", 0), ("events-b", 1)}, what="the new partitions")
    finally:
        for c in (a, b, r):
            c.close()


def test_at_most_once_and_at_least_once(broker):
    """The two delivery patterns, with a crash (close without committing) mid-record."""
    create(broker, "pay", 1)
    produce(broker, "pay", 10, 1)
    def first_record(group):
        c = consumer(broker, **{"group.id": group, "enable.auto.commit": False})
        c.subscribe(["pay"])
        deadline = time.monotonic() + 10
        rec = None
        while rec is None and time.monotonic() < deadline:
            rec = c.poll(0.1)
        assert rec is not None
        return c, rec

    # at-least-once: handle, then commit. A crash before the commit repeats the record.
    c, rec = first_record("alo")
    assert rec.offset() == 0
    c.close()                              # "crashed" while handling record 0: nothing committed
    c, rec = first_record("alo")
    assert rec.offset() == 0                 # record 0 again: delivered at least once
    c.commit(rec)                          # handled: commit its offset + 1
    c.close()
    c, rec = first_record("alo")
    assert rec.offset() == 1
    c.close()

    # at-most-once: commit, then handle. A crash while handling skips the record.
    c, rec = first_record("amo")
    assert rec.offset() == 0
    c.commit(rec)                          # committed before handling...
    c.close()                              # ...and "crashed" while handling record 0
    c, rec = first_record("amo")
    assert rec.offset() == 1                 # record 0 is not repeated: at most once
    c.close()


def test_on_assign_may_choose_where_partitions_start(broker):
    """confluent-kafka's idiom: inside on_assign, assign() the given partitions with
    offsets (here: replay from the beginning despite a committed offset)."""
    create(broker, "replay", 1)
    produce(broker, "replay", 5, 1)
    c = consumer(broker, **{"group.id": "r"})
    c.subscribe(["replay"])
    c.commit(offsets=[TopicPartition("replay", 0, 3)])    # standalone: the group has no member yet
    c.close()

    def from_beginning(c, parts):
        c.assign([TopicPartition(tp.topic, tp.partition, OFFSET_BEGINNING) for tp in parts])
    c = consumer(broker, **{"group.id": "r"})
    try:
        c.subscribe(["replay"], on_assign=from_beginning)
        first = []
        poll_all([c], lambda: first, on_records=lambda _, recs: first.extend(recs))
        assert first[0].offset() == 0
        with pytest.raises(Exception, match="assign\\(\\) on a subscribed consumer"):
            c.assign([TopicPartition("replay", 0, 0)])
    finally:
        c.close()
