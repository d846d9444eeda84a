"""The broker as its request handlers see it: the one interface through which
handlers.py (and the controller modules it calls: reassign.py, replication.py,
data_plane.py, group_shell.py) reach the server loop of server.py.

server.Broker implements it; nothing outside server.py calls a private method of the
broker. Everything here runs on the loop's thread: handlers never block, and a request
that needs a worker's answer passes a callback to worker_request, which the loop calls.

State the handlers read (and the few they change, as noted):
    config        BrokerConfig (config.py)
    metadata      Metadata (metadata.py): topics, partitions, ISR; handlers change it
                  through its methods and save() it before acting on the change
    limits        the partition limits (limits.py)
    supervisor    Supervisor (supervisor.py): `workers`, key -> WorkerHandle, where a
                  key is (topic, partition) for a leader and (topic, partition, replica)
                  for a follower; forget(handle) for a worker that will not run again
    groups        the GroupShell (group_shell.py): the group coordinator's I/O shell
    txn           the TxnShell (txn_shell.py): the transaction coordinator's I/O shell
    attachments   data_plane.Attachments: producers' rings, per partition
    offline       names of topics kept offline (above the limits at start); a deleted
                  topic's name is discarded from it
    dirs          a log_dirs.LogDirState per configured log dir
    stopping      True once the broker is stopping: start nothing new
    started       time.time() of the start
    moves_watched reassign.watch's flag: a check of the replica moves is due
"""
from typing import Any, Callable, Protocol

__all__ = ["ServerAPI"]


class ServerAPI(Protocol):
    config: Any
    metadata: Any
    limits: Any
    supervisor: Any
    groups: Any
    txn: Any
    attachments: Any
    offline: set
    dirs: list
    stopping: bool
    started: float
    moves_watched: bool

    # -- answering ---------------------------------------------------------------------
    def reply(self, conn, correlation_id, result, fds=()) -> None:
        """Send a response (or an OdradekError) to a client if it is still connected;
        the fds go with it and are closed once sent."""

    def worker_request(self, key, message, callback: Callable, fds=(), with_fds=False) -> None:
        """Relay `message` to the worker of `key` (see supervisor above); the loop calls
        callback(result) (or callback(result, fds)) with its answer, or with
        LEADER_NOT_AVAILABLE / KAFKA_STORAGE_ERROR if there is no running worker or it
        dies first."""

    def call_later(self, delay_s: float, fn: Callable[[], None]) -> None:
        """Call fn() from the loop once delay_s has passed."""

    # -- workers ---------------------------------------------------------------------------
    def start_worker(self, topic, p) -> Any:
        """Queue the first worker of partition `p` of `topic` (a TopicMeta) and its
        followers, creating the partition's shared memory; returns the leader's handle."""

    def queue_worker(self, handle) -> None:
        """Queue `handle`'s worker to be forked with its partition's current spec: a new
        follower, or a worker that stopped (a config change, a replica move) and starts
        again."""

    def leader_spec(self, topic, p) -> Any:
        """The WorkerSpec of the leader of partition `p` of `topic`, as of now."""

    def stop_worker(self, handle) -> None:
        """SIGTERM the worker; its exit comes back to handlers.worker_retired."""

    def release_partition(self, handle) -> None:
        """The partition's worker is gone for good: fence and free its shared memory and
        drop its producers' attachments."""

    def partition_shm(self, topic: str, partition: int) -> Any:
        """The PartitionShm of a partition (LEADER_NOT_AVAILABLE if it has none)."""

    # -- log dirs ------------------------------------------------------------------------
    def make_partition_dirs(self, topic, partitions) -> None:
        """Create the dirs of new partitions' replicas (before the metadata naming them
        is saved)."""

    def online_log_dirs(self) -> list:
        """Paths of the log dirs that are online."""

    def dir_offline_error(self, topic: str, partition) -> Any:
        """KAFKA_STORAGE_ERROR if the partition's leader is on an offline log dir, else None."""

    def min_insync_replicas(self, topic) -> int:
        """The topic's effective min.insync.replicas."""
