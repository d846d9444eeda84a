"""odradek.daemon.worker: the process that owns one partition replica's log."""
