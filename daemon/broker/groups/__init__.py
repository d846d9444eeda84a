"""Consumer groups: the group coordinator (Kafka's classic group protocol) and the
records it keeps in the internal topic __consumer_offsets.

    coordinator.py  GroupCoordinator: the sans-IO state machine, its dispatch table
    membership.py   join, sync, heartbeat, leave: the group state machine and its deadlines
    offsets.py      offset commit and fetch; loading __consumer_offsets
    txn_offsets.py  offsets committed in a transaction (TxnOffsetCommit)
    admin.py        find coordinator; list, describe and delete groups
    offset_delete.py  OffsetDelete: delete some committed offsets of a group
    context.py      what those three share, and the effects they emit
    config.py       GroupConfig and GROUP_CONFIGS: the coordinator's broker settings
    group.py        Group, Member, GroupState: one group's state
    effects.py      Peer (who asks), Reply / Persist / Note (what the loop must do)
    offsets_log.py  __consumer_offsets keys and values, Kafka's byte layouts (FORMAT.md)
"""
from odradek.daemon.broker.groups.config import GroupConfig
from odradek.daemon.broker.groups.coordinator import GroupCoordinator
from odradek.daemon.broker.groups.effects import Note, Peer, Persist, Reply
from odradek.daemon.broker.groups.group import CommittedOffset, GroupState

OFFSETS_TOPIC = "__consumer_offsets"

__all__ = ["GroupCoordinator", "GroupConfig", "GroupState", "CommittedOffset", "Peer", "Reply", "Persist",
           "Note", "OFFSETS_TOPIC"]
