"""Replication: what a follower replica needs to copy its leader's log (issue 9).

leader_files.py reads the leader's live segment files by pread; the follower writes
what it read with PartitionLog.append_as_follower (storage/log.py).
"""
