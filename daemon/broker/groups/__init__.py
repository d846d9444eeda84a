"""Consumer groups: the group coordinator (Kafka's classic group protocol) and the
records it keeps in the internal topic __consumer_offsets.

    coordinator.py  GroupCoordinator, GroupConfig: the sans-IO state machine
    group.py        Group, Member, GroupState: one group's state
    effects.py      Peer (who asks), Reply / Persist / Note (what the loop must do)
    offsets_log.py  __consumer_offsets keys and values, Kafka's byte layouts (FORMAT.md)
"""
from odradek.daemon.broker.groups.coordinator import GroupConfig, GroupCoordinator
from odradek.daemon.broker.groups.effects import Note, Peer, Persist, Reply
from odradek.daemon.broker.groups.group import CommittedOffset, GroupState

OFFSETS_TOPIC = "__consumer_offsets"

__all__ = ["GroupCoordinator", "GroupConfig", "GroupState", "CommittedOffset", "Peer", "Reply", "Persist",
           "Note", "OFFSETS_TOPIC"]
