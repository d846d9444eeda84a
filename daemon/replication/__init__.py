"""Replication: what follower replicas and their leaders share (issue 9).

leader_files.py reads the leader's live segment files by pread; the follower writes
what it read with PartitionLog.append_as_follower (storage/log.py). progress.py is the
shared-memory page where followers publish their log end offsets for the leader.
"""
