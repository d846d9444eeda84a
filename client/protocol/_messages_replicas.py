"""Replication messages: the ISR's proposals and updates between the broker and a
partition's leader, a new leader for the followers (LeaderAndIsr), and moving a replica
to another log dir (MoveReplicas). Declared as tables (see `messages` for the rules);
import them from `messages`.
"""
from odradek.client.protocol._schema import (
    INT16, INT32, INT64, NULLABLE_STRING, STRING, Array, Struct)
from odradek.client.protocol._messages_base import ApiKey


# ---- IsrProposal (1006), UpdateIsr (1007): broker <-> partition leader, internal ---------
# The ISR is the broker's (saved in the cluster metadata before it takes effect), the
# leader's to propose, as Kafka's AlterPartition: the broker keeps one IsrProposal in
# flight at each leader, which the leader answers when it wants the ISR changed (a
# follower caught up, or one fell behind replica.lag.time.max.ms). The broker checks it
# against the partition's epochs, saves it and sends UpdateIsr; it also sends UpdateIsr
# when it changes the ISR itself (a follower process died), and after refusing a stale
# proposal. The leader uses a proposed ISR only in the safe direction until UpdateIsr
# names it: a follower it wants to add already counts for the high watermark, one it
# wants to drop still does.

class IsrProposalRequest(Struct):
    API_KEY = ApiKey.ISR_PROPOSAL
    FIELDS = []


class IsrProposalResponse(Struct):
    API_KEY = ApiKey.ISR_PROPOSAL
    FIELDS = [
        ("leader_epoch",     INT32,         -1,  0),
        ("partition_epoch",  INT32,         -1,  0),   # the ISR version the proposal is based on
        ("isr",              Array(INT32),  [],  0),
        ("reason",           STRING,        "",  0),   # for the log: who caught up or fell behind
    ]


class UpdateIsrRequest(Struct):
    API_KEY = ApiKey.UPDATE_ISR
    FIELDS = [
        ("leader_epoch",     INT32,         -1,  0),
        ("partition_epoch",  INT32,         -1,  0),
        ("isr",              Array(INT32),  [],  0),
    ]


class UpdateIsrResponse(Struct):
    API_KEY = ApiKey.UPDATE_ISR
    FIELDS = []


# ---- LeaderAndIsr (1008): broker -> follower, internal -------------------------------------
# Kafka's LeaderAndIsr: the partition has a new leader (epoch). The follower it names
# becomes the leader in place (its open log, its producer state; the broker then moves
# the partition's producers to it); the others follow it from now on, first cutting
# what the leader's epoch cache says diverges (daemon/replication/truncation.py).

class LeaderAndIsrRequest(Struct):
    API_KEY = ApiKey.LEADER_AND_ISR
    FIELDS = [
        ("leader_id",        INT32,         -1,  0),
        ("leader_epoch",     INT32,         -1,  0),
        ("partition_epoch",  INT32,         -1,  0),
        ("isr",              Array(INT32),  [],  0),
        ("leader_dir",       STRING,        "",  0),   # the new leader's log dir
    ]


class LeaderAndIsrResponse(Struct):
    API_KEY = ApiKey.LEADER_AND_ISR
    FIELDS = [
        ("log_end_offset",  INT64,  -1,  0),
    ]


# ---- MoveReplicas (1009): move a replica to another log dir, online -----------------------
# Kafka's AlterReplicaLogDirs, as kafka-reassign-partitions carries it out: the broker
# adds a replica in the new dir, and once it is in sync drops the one in the old dir
# (daemon/broker/reassign.py). Answered when each move has started or been refused;
# Status shows a move under way (adding_replicas, removing_replicas).

class ReplicaMove(Struct):
    FIELDS = [
        ("topic",      STRING,  "",  0),
        ("partition",  INT32,   0,   0),
        ("from_dir",   STRING,  "",  0),   # a log dir path as in log.dirs: the replica to move
        ("to_dir",     STRING,  "",  0),   # an online log dir holding no replica of the partition
    ]


class MoveReplicasRequest(Struct):
    API_KEY = ApiKey.MOVE_REPLICAS
    FIELDS = [
        ("moves",  Array(ReplicaMove),  [],  0),
    ]


class ReplicaMoveResult(Struct):
    FIELDS = [
        ("topic",          STRING,           "",    0),
        ("partition",      INT32,            0,     0),
        ("error_code",     INT16,            0,     0),   # 0: the move has started
        ("error_message",  NULLABLE_STRING,  None,  0),
    ]


class MoveReplicasResponse(Struct):
    API_KEY = ApiKey.MOVE_REPLICAS
    FIELDS = [
        ("results",  Array(ReplicaMoveResult),  [],  0),   # one per move, in order
    ]
