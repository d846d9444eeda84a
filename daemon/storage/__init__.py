"""odradek.daemon.storage: the log of one partition replica on disk (Kafka's layout).

    PartitionLog   a partition's log: segments, append, read, recovery, retention, flush
    LogSegment     one .log with its .index and .timeindex
    LogConfig      topic configs with Kafka's names and defaults
    LogCleaner     log compaction (cleanup.policy=compact), in bounded steps
Byte layouts: FORMAT.md beside this file.
"""
from odradek.daemon.storage.config import LogConfig, TOPIC_CONFIGS
from odradek.daemon.storage.log import AppendInfo, FetchData, PartitionLog
from odradek.daemon.storage.segment import LogSegment
from odradek.daemon.storage.cleaner import LogCleaner

__all__ = ["PartitionLog", "LogSegment", "LogConfig", "LogCleaner", "TOPIC_CONFIGS", "AppendInfo", "FetchData"]
