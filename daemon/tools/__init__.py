"""odradek.daemon.tools: what the `odradek` command runs besides the broker.

    dump_log   print and check segment and index files (Kafka's kafka-dump-log.sh)
    demo       write a small partition log and show what happened (`make run` for now)

Each tool is a module of plain functions that write lines to a callable it is given;
the daemon/cli package parses arguments and turns errors into one line, nothing more.
"""
