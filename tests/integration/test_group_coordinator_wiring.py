"""The group coordinator served by the real broker: the protocol over the control
socket, commits appended to __consumer_offsets by its worker, and loaded again after a
restart. (The Consumer's group membership is tested in test_consumer_groups.py.)"""
import pytest

from odradek.client import Admin
from odradek.client.errors import InvalidTopic, UnknownMemberId
from odradek.client.protocol import ControlClient, messages as m


def commit(client, group, generation, member, offset):
    res, _ = client.call(m.OffsetCommitRequest(
        group_id=group, generation_id=generation, member_id=member,
        topics=[m.OffsetCommitRequestTopic(name="orders", partitions=[
            m.OffsetCommitRequestPartition(partition_index=0, committed_offset=offset,
                                           committed_metadata="meta")])]))
    return res.topics[0].partitions[0].error_code


def fetch(client, group):
    res, _ = client.call(m.OffsetFetchRequest(group_id=group, topics=[
        m.OffsetFetchRequestTopic(name="orders", partition_indexes=[0])]))
    p = res.topics[0].partitions[0]
    return p.committed_offset, p.metadata


def test_join_sync_commit_survive_a_restart(broker):
    with Admin(broker.socket_path) as admin:
        admin.create_topic("orders", 1)
        assert "__consumer_offsets" not in admin.list_topics()
        assert "__consumer_offsets" in admin.list_topics(include_internal=True)
        with pytest.raises(InvalidTopic, match="internal"):
            admin.delete_topic("__consumer_offsets")
    with ControlClient(broker.socket_path) as c:
        first, _ = c.call(m.JoinGroupRequest(group_id="g", session_timeout_ms=10000, rebalance_timeout_ms=10000,
                                             protocols=[m.JoinGroupRequestProtocol(name="range", metadata=b"x")]))
        member = first.member_id
        assert member
        res, _ = c.call(m.JoinGroupRequest(group_id="g", session_timeout_ms=10000, rebalance_timeout_ms=10000,
                                           member_id=member,
                                           protocols=[m.JoinGroupRequestProtocol(name="range", metadata=b"x")]))
        assert res.error_code == 0 and res.leader == member and res.generation_id == 1
        sync, _ = c.call(m.SyncGroupRequest(group_id="g", generation_id=1, member_id=member,
                                            assignments=[m.SyncGroupRequestAssignment(member_id=member,
                                                                                      assignment=b"A")]))
        assert sync.assignment == b"A"
        assert commit(c, "g", 1, member, 42) == 0
        assert fetch(c, "g") == (42, "meta")
        with pytest.raises(UnknownMemberId):
            c.call(m.HeartbeatRequest(group_id="g", generation_id=1, member_id="nobody"))
    assert broker.stop() == 0
    broker.start()
    with ControlClient(broker.socket_path) as c:
        assert fetch(c, "g") == (42, "meta")
        groups, _ = c.call(m.ListGroupsRequest())
        assert [g.group_id for g in groups.groups] == ["g"]


def test_committed_offsets_survive_a_sigkill_of_the_broker(broker):
    with Admin(broker.socket_path) as admin:
        admin.create_topic("orders", 1)
    with ControlClient(broker.socket_path) as c:
        for i in range(20):                       # standalone commits (an Empty group)
            assert commit(c, f"g{i % 4}", -1, "", 100 + i) == 0
    broker.kill()                                 # SIGKILL: the workers die with it (PDEATHSIG)
    broker.start()
    with ControlClient(broker.socket_path) as c:
        assert [fetch(c, f"g{k}")[0] for k in range(4)] == [116, 117, 118, 119]


def test_a_members_client_id_names_it(broker):
    from odradek.client import Consumer
    from support.broker import wait_until
    with Admin(broker.socket_path) as admin:
        admin.create_topic("orders", 1)
        with Consumer({"socket": broker.socket_path, "group.id": "named", "client.id": "billing-app"}) as c:
            c.subscribe(["orders"])
            wait_until(lambda: c.poll(0.05) is None and c.assignment(), 20, what="an assignment")
            (member,) = admin.describe_group("named").members
    assert member.client_id == "billing-app" and member.member_id.startswith("billing-app-")


def test_a_group_member_carries_on_across_a_broker_restart(broker):
    from odradek.client import Consumer, Producer
    from support.broker import wait_until
    with Admin(broker.socket_path) as admin:
        admin.create_topic("orders", 2)
    got = []

    def take(c, n, timeout=30):
        def more():
            rec = c.poll(0.1)
            if rec is not None:
                got.append(rec.value())
            return len(got) >= n
        wait_until(more, timeout, interval=0, what=f"{n} records")

    with Producer({"socket": broker.socket_path, "linger.ms": 0}) as p:
        for i in range(10):
            p.produce("orders", b"a%d" % i, partition=i % 2)
        assert p.flush(10) == 0
        with Consumer({"socket": broker.socket_path, "group.id": "g", "auto.offset.reset": "earliest",
                       "heartbeat.interval.ms": 200}) as c:
            c.subscribe(["orders"])
            take(c, 10)
            c.commit()
            assert broker.stop() == 0
            broker.start()
            for i in range(10):
                p.produce("orders", b"b%d" % i, partition=i % 2)
            assert p.flush(20) == 0
            take(c, 20)
    assert sorted(got) == sorted([b"a%d" % i for i in range(10)] + [b"b%d" % i for i in range(10)])
