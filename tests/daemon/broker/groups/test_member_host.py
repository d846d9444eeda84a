"""A member behind a connection it does not own (the Kafka gateway's TCP client) says where
it is with JoinGroup v1's client_host, and DescribeGroups shows that; a member that says
nothing shows its connection's pid and uid."""
from odradek.client.protocol import messages as m
from odradek.daemon.broker.groups import Peer

GATEWAY = Peer("gw", "kafka-app", 7, 1000, "/127.0.0.1:5555")


def test_describe_shows_the_host_a_member_gave_else_its_connections_pid_and_uid(h):
    (_, unix_member), = h.stable_group(1)[0]

    def join(handle, member_id):
        h.apply(h.coord.handle(GATEWAY, handle, m.JoinGroupRequest(
            group_id="tcp", session_timeout_ms=10_000, protocol_type="consumer", member_id=member_id,
            protocols=[m.JoinGroupRequestProtocol(name="range", metadata=b"")]), h.now))
        h.tick()                                       # the join completes
        return h.replies[("gw", handle)]
    tcp_member = join(1, "").member_id                 # MEMBER_ID_REQUIRED, then the join
    assert join(2, tcp_member).generation_id == 1
    assert [x.client_host for x in h.coord.describe("tcp").members] == ["/127.0.0.1:5555"]
    assert [(x.member_id, x.client_host) for x in h.coord.describe("g").members] == [
        (unix_member, "pid:100 uid:1000")]
