"""The broker's side of the Kafka listener: bind it, run its gateway processes, restart them.

The broker binds the listener's socket itself at start (config `listeners`), so a port
that is taken is known at once: under a config file it stops the broker with the
reason; in dev mode (--data-dir, on by default) it is one WARNING line and the broker
runs without a listener. It then runs `listener.processes` gateway processes
(`python -m odradek.daemon.gateway`, a fresh interpreter: the gateway is threaded and
imports kio; the broker is neither) that all accept on that one socket: the kernel hands
each connection to one of them, and while one restarts, connections wait in the
socket's backlog instead of being refused.

Like a worker, a gateway's death is seen at once through its pidfd, and it is started
again after a backoff (0, 0.1, 0.2 ... 5 s while it keeps dying young). It exits with
the broker (PR_SET_PDEATHSIG) and is sent SIGTERM first at a clean stop, so Kafka
clients are disconnected before the partitions stop. Each process's counters (open,
accepted, refused connections) are in a memfd the broker reads for `odradek status`
(daemon/gateway/stats.py).
"""
import errno
import logging
import os
import signal
import subprocess
import sys
import time

from odradek.client.errors import InvalidConfig
from odradek.daemon.gateway.listeners import bind, hostport
from odradek.daemon.gateway.stats import Counters

__all__ = ["Gateways", "GatewayHandle"]

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 5.0
HEALTHY_AFTER_S = 10.0


class GatewayHandle:
    """One gateway process: its slot, pid, pidfd and restart bookkeeping."""

    def __init__(self, index):
        self.index = index
        self.proc = None
        self.pidfd = None
        self.started_at = None
        self.restarts = 0
        self.backoff = 0.0
        self.restart_at = None
        self.retire = False

    @property
    def pid(self):
        return self.proc.pid if self.proc is not None else None

    @property
    def alive(self):
        return self.proc is not None


class Gateways:
    """The listener and its processes, for the broker loop (server.py)."""

    def __init__(self, config, dev_mode):
        self.config = config.listener           # a listeners.ListenerConfig, or None
        self.socket_path = config.socket_path
        self.dev_mode = dev_mode
        self.sock = None
        self.counters = None
        self.handles = []
        self.bootstrap = None                     # "host:port" clients use (advertised), once bound
        self.bound = None                         # "host:port" bound

    def bind(self):
        """Bind the listener (if configured); see the module doc for a taken port."""
        if self.config is None:
            return
        listener = self.config.listener
        try:
            self.sock = bind(listener)
        except OSError as e:
            why = "the port is taken" if e.errno == errno.EADDRINUSE else e.strerror
            if self.dev_mode:
                log.warning("Kafka listener %s not started: %s (%s); the broker runs without it; set another "
                            "port with --override listeners=%s://127.0.0.1:PORT", listener.uri, why, e, listener.name)
                return
            raise InvalidConfig(f"listeners={listener.uri}: cannot bind: {why} ({e}); free it or choose "
                                f"another port") from None
        host, port = self.sock.getsockname()[:2]
        advertised = self.config.advertised
        self.bootstrap = hostport(advertised.host, advertised.port or port) if advertised else hostport(host, port)
        self.bound = hostport(host, port)
        self.counters = Counters(self.config.processes)
        self.handles = [GatewayHandle(i) for i in range(self.config.processes)]
        log.info("Kafka listener %s://%s: bootstrap.servers=%s (%d gateway process%s)", listener.name,
                 self.bound, self.bootstrap, len(self.handles), "es" if len(self.handles) > 1 else "")

    def start(self, handle):
        """Run gateway process `handle` (True; its pidfd is for the broker's selector), or
        schedule another try (False)."""
        cfg = self.config
        args = [sys.executable, "-m", "odradek.daemon.gateway", "--socket", self.socket_path,
                "--listen-fd", str(self.sock.fileno()), "--advertised", self.bootstrap,
                "--max-request-bytes", str(cfg.max_request_bytes), "--max-connections", str(cfg.max_connections),
                "--idle-ms", str(cfg.idle_ms), "--max-produce-rings", str(cfg.max_produce_rings),
                "--stats-fd", str(self.counters.fd),
                "--stats-slot", str(handle.index), "--stats-slots", str(len(self.handles)),
                "--parent-pid", str(os.getpid())]
        if cfg.sasl:     # every client authenticates, from wherever it is
            args += ["--sasl-plain-users", cfg.sasl_users_file, "--no-uid-check", "--allow-remote"]
        if not cfg.uid_check:
            args.append("--no-uid-check")
        if cfg.allow_remote:
            args.append("--allow-remote")
        self.counters.reset(handle.index)
        try:
            handle.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, pass_fds=(self.sock.fileno(),
                                                                                     self.counters.fd))
        except OSError as e:         # no process to be had now (EAGAIN, ENOMEM): try again later
            handle.backoff = min(MAX_BACKOFF_S, max(0.1, handle.backoff * 2))
            handle.restart_at = time.monotonic() + handle.backoff
            log.error("gateway not started: %s; again in %.1fs", e, handle.backoff)
            return False
        handle.pidfd = os.pidfd_open(handle.proc.pid)
        handle.started_at = time.monotonic()
        handle.restart_at = None
        log.info("started gateway %d (listener process %d of %d)", handle.proc.pid, handle.index + 1,
                 len(self.handles))
        return True

    def reap(self, handle):
        """`handle`'s pidfd is readable: collect it, schedule its restart; a description."""
        status = handle.proc.wait()
        os.close(handle.pidfd)
        lived = time.monotonic() - handle.started_at
        pid = handle.proc.pid
        handle.proc = handle.pidfd = None
        self.counters.reset(handle.index)
        how = f"killed by signal {signal.Signals(-status).name}" if status < 0 else f"exit status {status}"
        if handle.retire:
            return f"gateway {pid} ended: {how}"
        handle.backoff = 0.0 if lived >= HEALTHY_AFTER_S else min(MAX_BACKOFF_S, max(0.1, handle.backoff * 2))
        handle.restart_at = time.monotonic() + handle.backoff
        handle.restarts += 1
        return f"gateway {pid} ended: {how}; restarting in {handle.backoff:.1f}s"

    def due(self, now):
        """Handles whose restart is due."""
        return [h for h in self.handles if h.restart_at is not None and now >= h.restart_at and not h.retire]

    def next_restart(self):
        times = [h.restart_at for h in self.handles if h.restart_at is not None and not h.retire]
        return min(times) if times else None

    def stop(self, sig=signal.SIGTERM):
        """Ask every gateway to stop (they are reaped through their pidfds) and close the
        broker's descriptor of the listener (the socket closes with the last gateway)."""
        for handle in self.handles:
            handle.retire = True
            handle.restart_at = None
            if handle.proc is not None:
                try:
                    handle.proc.send_signal(sig)
                except ProcessLookupError:
                    pass
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def any_alive(self):
        return any(h.alive for h in self.handles)

    def kill_all(self):
        """At exit: SIGKILL and wait for whatever still runs; free the counters."""
        for handle in self.handles:
            if handle.proc is not None:
                handle.proc.kill()
                handle.proc.wait()
                os.close(handle.pidfd)
                handle.proc = handle.pidfd = None
        if self.counters is not None:
            self.counters.close()
            self.counters = None

    def status(self):
        """[(address, pid, state, open, accepted, refused, restarts, uptime_ms)] per process."""
        rows = []
        for h in self.handles:
            opened, accepted, refused = self.counters.read(h.index) if h.alive else (0, 0, 0)
            rows.append((self.bound, h.pid or 0, "running" if h.alive else "stopping" if h.retire else "restarting",
                         opened, accepted, refused, h.restarts,
                         int((time.monotonic() - h.started_at) * 1000) if h.alive else 0))
        return rows
