"""`python -m odradek.daemon.gateway`: run a gateway process.

The broker runs it (daemon/broker/gateways.py) with the listening socket it bound
(`--listen-fd`), its counters' memfd (`--stats-fd`, `--stats-slot`) and its own pid
(`--parent-pid`: the gateway exits with the broker, PR_SET_PDEATHSIG). By hand, for
tests: `--socket PATH --listen HOST:PORT` binds its own socket and prints the
`bootstrap.servers=` line.
"""
import argparse
import ctypes
import logging
import os
import signal
import socket
import sys

# kio registers strategies for its types with hypothesis whenever hypothesis imports (a test
# dependency, so installed in the dev venv `make run` uses): ~0.2 s of every gateway
# start for nothing a broker does. This process never imports it: kio sees it missing.
sys.modules.setdefault("hypothesis", None)   # type: ignore[arg-type]

from odradek.daemon.gateway import codec, server  # noqa: E402
from odradek.daemon.gateway.auth import Admission, PeerRule  # noqa: E402
from odradek.daemon.gateway.broker_link import BrokerLinks  # noqa: E402
from odradek.daemon.gateway.listeners import hostport  # noqa: E402
from odradek.daemon.gateway.produce_rings import DEFAULT_MAX_PRODUCE_RINGS, ring_budget  # noqa: E402
from odradek.daemon.gateway.sasl_users import PlainUsers  # noqa: E402
from odradek.daemon.gateway.server import Gateway  # noqa: E402
from odradek.daemon.gateway.stats import Counters  # noqa: E402

_PR_SET_PDEATHSIG = 1


def _hostport(text):
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m odradek.daemon.gateway",
                                 description="Kafka's wire protocol on TCP, for the broker at --socket.")
    ap.add_argument("--socket", required=True, help="the broker's control socket")
    where = ap.add_mutually_exclusive_group()
    where.add_argument("--listen", type=_hostport, default=("127.0.0.1", 9092),
                       help="HOST:PORT to bind (default 127.0.0.1:9092)")
    where.add_argument("--listen-fd", type=int, help="a listening TCP socket to serve (the broker's)")
    ap.add_argument("--advertised", type=_hostport, help="HOST:PORT Metadata returns (default: the bound one)")
    ap.add_argument("--max-request-bytes", type=int, default=server.DEFAULT_MAX_REQUEST_BYTES)
    ap.add_argument("--max-connections", type=int, default=server.DEFAULT_MAX_CONNECTIONS,
                    help="connections open at once in all the listener's processes")
    ap.add_argument("--idle-ms", type=int, default=int(server.DEFAULT_IDLE_S * 1000))
    ap.add_argument("--max-produce-rings", type=int, default=DEFAULT_MAX_PRODUCE_RINGS,
                    help="produce ring attachments this process holds at once (produce_rings.py)")
    ap.add_argument("--no-uid-check", action="store_true", help="admit every loopback peer")
    ap.add_argument("--allow-remote", action="store_true", help="admit peers on non-loopback addresses")
    ap.add_argument("--sasl-plain-users", metavar="FILE",
                    help="SASL_PLAINTEXT: clients authenticate (SASL/PLAIN) as a user of FILE (sasl_users.py)")
    ap.add_argument("--stats-fd", type=int, help="the listener's connection counters (stats.py)")
    ap.add_argument("--stats-slot", type=int, default=0, help="this process's slot in --stats-fd")
    ap.add_argument("--stats-slots", type=int, default=1, help="the slots in --stats-fd (listener.processes)")
    ap.add_argument("--parent-pid", type=int, help="exit when this process (the broker) does")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s")
    if args.parent_pid is not None:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != args.parent_pid:
            return 1          # the broker died before the prctl: nothing to serve for
    if args.listen_fd is not None:
        sock = socket.socket(fileno=args.listen_fd)
    else:
        sock = socket.create_server(args.listen, family=socket.AF_INET6 if ":" in args.listen[0] else socket.AF_INET)
    counters = Counters(args.stats_slots, args.stats_fd) if args.stats_fd is not None else None
    users = PlainUsers.load(args.sasl_plain_users) if args.sasl_plain_users else None
    admit = Admission(PeerRule(args.socket), uid_check=not args.no_uid_check, allow_remote=args.allow_remote)
    gateway = Gateway(sock, BrokerLinks(args.socket), max_request_bytes=args.max_request_bytes,
                      max_connections=args.max_connections, idle_s=args.idle_ms / 1000, admit=admit,
                      advertised=args.advertised, counters=counters, slot=args.stats_slot, sasl=users)
    ring_budget(gateway, args.max_produce_rings)
    signal.signal(signal.SIGTERM, lambda *_: gateway.stop())
    # Ctrl-C reaches the whole process group; under a broker, the broker decides (SIGTERM)
    signal.signal(signal.SIGINT, signal.SIG_IGN if args.parent_pid is not None else lambda *_: gateway.stop())
    bound = hostport(*sock.getsockname()[:2])
    if args.listen_fd is None:
        print(f"gateway: Kafka clients: bootstrap.servers={bound}", file=sys.stderr, flush=True)
    logging.getLogger("odradek.gateway").info("serving Kafka clients on %s for %s", bound, args.socket)
    codec.freeze_layouts()     # a full collection walks only what serving allocates (codec.py)
    gateway.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
