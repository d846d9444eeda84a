"""`python -m odradek.daemon.cli`: the odradek command."""
from odradek.daemon.cli import main

main()
