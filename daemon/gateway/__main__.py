"""`python -m odradek.daemon.gateway --socket PATH --listen HOST:PORT`: run a gateway."""
import argparse
import logging
import signal
import socket
import sys
import threading

from odradek.daemon.gateway.broker_link import BrokerLinks
from odradek.daemon.gateway.server import Gateway


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m odradek.daemon.gateway",
                                 description="Kafka's wire protocol on TCP, for the broker at --socket.")
    ap.add_argument("--socket", required=True, help="the broker's control socket")
    ap.add_argument("--listen", default="127.0.0.1:9092", help="HOST:PORT to listen on (default %(default)s)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="gateway %(levelname)s %(message)s")
    host, _, port = args.listen.rpartition(":")
    sock = socket.create_server((host, int(port)), reuse_port=False)
    gateway = Gateway(sock, BrokerLinks(args.socket))
    done = threading.Event()

    def on_signal(signum, frame):
        done.set()
        gateway.stop()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    print(f"gateway: Kafka clients: bootstrap.servers={host}:{sock.getsockname()[1]}", file=sys.stderr, flush=True)
    gateway.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
