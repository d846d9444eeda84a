"""Random interleavings of group requests, timeouts, disconnections and slow writes:
the coordinator never breaks its own invariants, never answers a request twice, keeps
one assignment per generation, and leaves no request unanswered once time runs on."""
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from odradek.client.errors import MemberIdRequired, OdradekError
from odradek.client.protocol import messages as m
from odradek.daemon.broker.groups import GroupConfig, GroupState

S = GroupState
CLIENTS = 4

well_behaved = st.tuples(st.just("step"), st.integers(0, CLIENTS - 1))
time_passes = st.tuples(st.just("tick"), st.sampled_from([0, 1, 500, 3000, 9000, 20000]))
writes_finish = st.tuples(st.just("persist"), st.sampled_from([True, True, True, False]))  # False: fails
actions = st.lists(st.one_of(
    *[well_behaved] * 14, *[time_passes] * 3, *[writes_finish] * 3,
    st.tuples(st.just("join"), st.integers(0, CLIENTS - 1), st.booleans(), st.sampled_from([b"a", b"b"])),
    st.tuples(st.just("sync"), st.integers(0, CLIENTS - 1)),
    st.tuples(st.just("heartbeat"), st.integers(0, CLIENTS - 1)),
    st.tuples(st.just("commit"), st.integers(0, CLIENTS - 1)),
    st.tuples(st.just("leave"), st.integers(0, CLIENTS - 1)),
    st.tuples(st.just("close"), st.integers(0, CLIENTS - 1)),
    st.tuples(st.just("restart"), st.integers(0, CLIENTS - 1)),
), min_size=10, max_size=80)


def check_invariants(h):
    for group in h.coord.groups.values():
        members = group.members
        assert (group.leader_id is None) == (not members)
        assert group.leader_id is None or group.leader_id in members
        if group.state is S.EMPTY:
            assert not members
        if group.state in (S.STABLE, S.COMPLETING_REBALANCE):
            assert members
        assert group.pending_sync <= set(members)
        for iid, mid in group.static_members.items():
            assert members[mid].group_instance_id == iid
        assert {x.group_instance_id for x in members.values() if x.is_static} == set(group.static_members)
        for x in members.values():
            if x.sync_waiter is not None:
                assert group.state is S.COMPLETING_REBALANCE
            if x.join_waiter is not None:
                assert group.state in (S.PREPARING_REBALANCE, S.STABLE)   # Stable: a static rejoin being stored


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(actions)
def test_random_interleavings_keep_the_protocol(make_harness, steps):
    h = make_harness(GroupConfig(initial_rebalance_delay_ms=0, min_session_timeout_ms=1), auto_persist=False)
    # what each client believes: its connection, member id, generation, group.instance.id
    clients = [{"conn": f"c{i}.0", "n": 0, "mid": "", "gen": -1, "iid": f"i{i}" if i % 2 else None,
                "ids": set(), "joins": [], "phase": "join", "waiting": None} for i in range(CLIENTS)]
    calls, syncs, closed = [], [], set()

    def follow(c):
        """A well-behaved client: the next step of Kafka's consumer protocol, from what
        it was last told."""
        call, c["waiting"] = c["waiting"], None
        if call is not None and call.done and call.conn == c["conn"]:
            r = call.result
            if isinstance(r, OdradekError):
                c["phase"] = "join"
                if r.name in ("UNKNOWN_MEMBER_ID", "FENCED_INSTANCE_ID", "ILLEGAL_GENERATION"):
                    c["mid"] = "" if r.name != "ILLEGAL_GENERATION" else c["mid"]
            elif isinstance(r, m.JoinGroupResponse):
                c["phase"] = "sync" if r.error_code == 0 else "join"
            elif isinstance(r, m.SyncGroupResponse):
                c["phase"] = "stable"
        elif call is not None and not call.done:
            c["waiting"] = call
            return None
        if c["phase"] == "join":
            call = h.join(c["conn"], member_id=c["mid"], instance=c["iid"], protocols=[("range", b"a")],
                          session=10_000, rebalance=15_000)
            c["joins"].append(call)
        elif c["phase"] == "sync":
            group = h.coord.groups.get("g")
            leader = group is not None and group.leader_id == c["mid"]
            plan = {mid: f"{mid}@{c['gen']}".encode() for mid in group.members} if leader else {}
            call = h.sync(c["conn"], "g", c["gen"], c["mid"], plan, instance=c["iid"])
            syncs.append((call, c, c["gen"]))
        else:
            call = h.heartbeat(c["conn"], "g", c["gen"], c["mid"], instance=c["iid"])
        c["waiting"] = call
        return call

    def learn():
        """Clients learn their member id and generation from JoinGroup answers."""
        for c in clients:
            for call in [j for j in c["joins"] if j.done]:
                c["joins"].remove(call)
                r = call.result
                if isinstance(r, OdradekError) or call.conn != c["conn"]:
                    continue
                if r.error_code in (0, MemberIdRequired.code):
                    c["mid"] = r.member_id
                    c["ids"].add(r.member_id)
                if r.error_code == 0:
                    c["gen"] = r.generation_id

    for step in steps:
        kind = step[0]
        c = clients[step[1]] if kind not in ("tick", "persist") else None
        if kind == "step":
            call = follow(c)
            if call is not None:
                calls.append(call)
        elif kind == "join":
            _, _, fresh, meta = step
            call = h.join(c["conn"], member_id="" if fresh else c["mid"], instance=c["iid"],
                          protocols=[("range", meta)], session=10_000, rebalance=15_000)
            c["joins"].append(call)
            calls.append(call)
        elif kind == "sync":
            group = h.coord.groups.get("g")
            leader = group is not None and group.leader_id == c["mid"]
            plan = {mid: f"{mid}@{c['gen']}".encode() for mid in group.members} if leader else {}
            call = h.sync(c["conn"], "g", c["gen"], c["mid"], plan, instance=c["iid"])
            syncs.append((call, c, c["gen"]))
            calls.append(call)
        elif kind == "heartbeat":
            calls.append(h.heartbeat(c["conn"], "g", c["gen"], c["mid"], instance=c["iid"]))
        elif kind == "commit":
            calls.append(h.commit(c["conn"], "g", c["gen"], c["mid"], {("t", 0): len(calls)}, instance=c["iid"]))
        elif kind == "leave":
            calls.append(h.leave(c["conn"], "g", (c["mid"], c["iid"])))
        elif kind in ("close", "restart"):
            h.close(c["conn"])
            closed.add(c["conn"])
            c["n"] += 1
            c["conn"] = f"c{step[1]}.{c['n']}"
            c.update(waiting=None, phase="join")
            if kind == "restart":   # the process comes back knowing nothing
                c.update(mid="", gen=-1)
        elif kind == "tick":
            h.tick(step[1])
        elif kind == "persist":
            h.flush(None if step[1] else OdradekError("disk trouble"))
        learn()
        check_invariants(h)

    # let time run: everything waiting is answered, and an idle group ends Empty
    h.flush()
    for _ in range(5):
        h.tick(10**6)
        h.flush()
    # (a reply to a closed connection has nowhere to go: those may be dropped)
    assert all(call.done for call in calls if call.conn not in closed), "a request was never answered"
    group = h.coord.groups.get("g")
    assert group is None or group.state is S.EMPTY
    assert h.coord.next_deadline() is None

    # every assignment handed out is the one the leader planned for that member (under
    # one of its ids: a restarted static member gets its previous assignment) in the
    # generation it synced
    learn()
    for call, c, gen in syncs:
        if call.done and isinstance(call.result, m.SyncGroupResponse) and call.result.assignment:
            mid, _, planned_gen = call.result.assignment.decode().rpartition("@")
            assert int(planned_gen) == gen and mid in c["ids"]
