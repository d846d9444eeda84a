"""Group administration: FindCoordinator, ListGroups, DescribeGroups and DeleteGroups
(which writes the tombstones of a deleted group). Part of the GroupCoordinator; no I/O,
no clock: `now` (ms) is always given.
"""
from functools import partial

from odradek.client.errors import GroupIdNotFound, InvalidRequest, NonEmptyGroup
from odradek.client.protocol import messages as m
from odradek.daemon.broker.groups import offsets_log as fmt
from odradek.daemon.broker.groups.context import store_error
from odradek.daemon.broker.groups.group import GroupState, Waiter

__all__ = ["GroupAdmin"]

_S = GroupState


class GroupAdmin:
    """The admin part of the coordinator, over the shared Context `ctx`."""

    def __init__(self, ctx):
        self.ctx = ctx

    def find_coordinator(self, peer, handle, req, now):
        if req.key_type != m.CoordinatorType.GROUP:
            return self.ctx.reply(peer.conn, handle, InvalidRequest(
                f"coordinator type {req.key_type} is not served (only groups, 0)"))
        self.ctx.reply(peer.conn, handle, m.FindCoordinatorResponse(node_id=0))

    def list_groups(self, peer, handle, req, now):
        wanted = {s.lower() for s in req.states_filter}
        listed = [m.ListedGroup(group_id=g.group_id, protocol_type=g.protocol_type or "",
                                group_state=str(g.state))
                  for g in sorted(self.ctx.groups.values(), key=lambda g: g.group_id)
                  if not g.is_(_S.DEAD) and (not wanted or str(g.state).lower() in wanted)]
        self.ctx.reply(peer.conn, handle, m.ListGroupsResponse(groups=listed))

    def describe_groups(self, peer, handle, req, now):
        self.ctx.reply(peer.conn, handle, m.DescribeGroupsResponse(
            groups=[self.describe(group_id) for group_id in req.groups]))

    def describe(self, group_id):
        """The DescribedGroup of a group (GROUP_ID_NOT_FOUND, state Dead, if unknown).
        As in Kafka, member metadata and assignments are shown only while Stable."""
        group = self.ctx.groups.get(group_id)
        if group is None or group.is_(_S.DEAD):
            e = GroupIdNotFound(f"group {group_id} does not exist")
            return m.DescribedGroup(error_code=e.code, error_message=e.message, group_id=group_id,
                                    group_state=str(_S.DEAD))
        stable = group.is_(_S.STABLE)
        members = [m.DescribedGroupMember(
            member_id=x.member_id, group_instance_id=x.group_instance_id, client_id=x.client_id,
            client_host=x.client_host, member_metadata=x.metadata(group.protocol_name) if stable else b"",
            member_assignment=x.assignment if stable else b"") for x in group.members.values()]
        return m.DescribedGroup(group_id=group_id, group_state=str(group.state),
                                protocol_type=group.protocol_type or "",
                                protocol_data=(group.protocol_name or "") if stable else "", members=members)

    def delete_groups(self, peer, handle, req, now):
        results, records, deleted = [], [], []
        for group_id in dict.fromkeys(req.groups_names):
            group = self.ctx.groups.get(group_id)
            error = None
            if group is None or group.is_(_S.DEAD):
                error = GroupIdNotFound(f"group {group_id} does not exist")
            elif not group.is_(_S.EMPTY):
                error = NonEmptyGroup(f"group {group_id} is {group.state} with {group.size} members; "
                                      "only an empty group can be deleted")
            else:
                group.transition(_S.DEAD, now)
                del self.ctx.groups[group_id]
                for topic, partition in sorted(group.offsets):
                    records.append((fmt.encode_offset_key(group_id, topic, partition), None))
                if group.generation_id > 0:  # generation 0 never wrote its metadata
                    records.append((fmt.encode_group_key(group_id), None))
                group.offsets.clear()
                deleted.append(group_id)
                self.ctx.note(group_id, "deleted")
            results.append(m.DeletableGroupResult(group_id=group_id, error_code=error.code if error else 0,
                                                  error_message=error.message if error else None))
        response = m.DeleteGroupsResponse(results=results)
        if records:
            self.ctx.persist(records, partial(self._deleted, Waiter(peer.conn, handle), response, deleted))
        else:
            self.ctx.reply(peer.conn, handle, response)

    def _deleted(self, waiter, response, deleted, now, error):
        """The tombstones are durable (or failed): answer, with the error for each group
        deleted if they failed."""
        if error is not None:
            e = store_error(error, "")
            for result in response.results:
                if result.group_id in deleted:
                    result.error_code, result.error_message = e.code, e.message
        self.ctx.answer(waiter, response)
