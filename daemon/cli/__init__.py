"""The `odradek` command (click). Kept thin: each command parses its arguments and calls
one module (daemon/tools/...); each docstring is the command's help, with an example.

One module per command group, each registering its commands on the root group:
    root.py     the `cli` group, main(), the one error boundary, shared options
    files.py    dump-log, demo: local files, no broker
    broker.py   serve, status, log-dirs
    topics.py   topics create/list/describe/alter/delete
    data.py     produce, consume
    groups.py   groups list/describe/reset-offsets/delete
    transactions.py  transactions list/describe

The console script is odradek.daemon.cli:main (setup.py); `python -m odradek.daemon.cli`
runs the same.
"""
from odradek.daemon.cli import broker, data, files, groups, topics, transactions  # noqa: F401  (they register their commands)
from odradek.daemon.cli.root import cli, main

__all__ = ["cli", "main"]
