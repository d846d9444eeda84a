"""What a Membership (client/group_membership.py) asks its shells to do: the actions
its jobs yield. Each is answered with (value, error, now): its result or the exception
it raised, and the time after it.

Poll-thread actions (GroupMember runs them against the Consumer's PartitionHost):
    Call(request, timeout_ms)   on the consumer's own control connection -> the response
    ReadPositions(keys)         -> {(topic, partition): next offset} for those it holds
    ReadAssigned()              -> the keys of the consumer's manual assignment
    Assign(keys, offsets)       open and position partitions (a committed offset, or None:
                                auto.offset.reset decides); offsets None: open them with no
                                position, not fetched until Position (or a seek()) gives one
    Position(offsets)           give partitions Assign opened with no position theirs (as in
                                Assign); one that has a position since (a seek()) keeps it
    Revoke(keys)                close them, then on_revoke(keys)
    Lose(keys)                  close them, then on_lost(keys) (on_revoke without one)
    Callback(name, keys)        call the application's `name` callback (on_assign)
    ReportCommit(error, parts)  the on_commit config callback (an auto commit failed)
    Backoff(ms)                 wait that long before the job goes on
    WakeLink()                  the group thread has a job (start it the first time)
    RaiseCallbackError()        the step is done: raise what a callback raised, if anything
Group-thread actions:
    Send(request, timeout_ms)   on the group connection -> the response
    WakePoll()                  ring the Waker: step() has news
"""
from dataclasses import dataclass
from typing import Any

__all__ = ["Call", "ReadPositions", "ReadAssigned", "Assign", "Position", "Revoke", "Lose", "Callback",
           "ReportCommit", "Backoff", "WakeLink", "RaiseCallbackError", "Send", "WakePoll"]


@dataclass(frozen=True)
class Call:
    request: Any
    timeout_ms: int | None = None


@dataclass(frozen=True)
class ReadPositions:
    keys: list


@dataclass(frozen=True)
class ReadAssigned:
    pass


@dataclass(frozen=True)
class Assign:
    keys: list
    offsets: dict | None


@dataclass(frozen=True)
class Position:
    offsets: dict


@dataclass(frozen=True)
class Revoke:
    keys: list


@dataclass(frozen=True)
class Lose:
    keys: list


@dataclass(frozen=True)
class Callback:
    name: str
    keys: list


@dataclass(frozen=True)
class ReportCommit:
    error: Any
    partitions: list


@dataclass(frozen=True)
class Backoff:
    ms: int


@dataclass(frozen=True)
class WakeLink:
    pass


@dataclass(frozen=True)
class RaiseCallbackError:
    pass


@dataclass(frozen=True)
class Send:
    request: Any
    timeout_ms: int | None = None


@dataclass(frozen=True)
class WakePoll:
    pass
