"""Waiting is blocking, never polling: an idle broker with 100 partitions and an idle
consumer of all of them use ~0% CPU."""
import threading
import time

import psutil

from odradek.client import Admin, Consumer, TopicPartition
from support.broker import INTERNAL_PARTITIONS, wait_until

IDLE_S = 2.0


def cpu_seconds(procs):
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def test_an_idle_broker_and_consumer_use_almost_no_cpu(broker):
    with Admin(broker.socket_path) as admin:
        admin.create_topic("quiet", 100)
    wait_until(lambda: len(broker.workers()) == 100 + INTERNAL_PARTITIONS, 30, what="100 workers")
    procs = [psutil.Process(broker.pid)] + [psutil.Process(pid) for pid in broker.workers()]
    me = psutil.Process()
    with Consumer({"socket": broker.socket_path}) as c:
        c.assign([TopicPartition("quiet", i) for i in range(100)])
        assert c.poll(0.2) is None           # positions resolved; now only waiting
        with Admin(broker.socket_path) as admin:  # every worker answers: its start-up is over
            assert all(p.log_end_offset == 0 for p in admin.status(["quiet"]).partitions)
        before, mine = cpu_seconds(procs), me.cpu_times()
        t0 = time.monotonic()
        waiter = threading.Thread(target=lambda: c.poll(IDLE_S))
        waiter.start()
        waiter.join(IDLE_S + 5)
        elapsed = time.monotonic() - t0
        after, mine_after = cpu_seconds(procs), me.cpu_times()
    used = after - before
    consumer_used = (mine_after.user + mine_after.system) - (mine.user + mine.system)
    assert elapsed >= IDLE_S * 0.9
    # 101 processes for 2 s: ~0% is well under 5% of one core
    assert used < 0.1 * IDLE_S, f"broker and workers used {used:.3f} s CPU in {elapsed:.1f} s idle"
    assert consumer_used < 0.05 * IDLE_S, f"the idle consumer used {consumer_used:.3f} s CPU"
