"""The Kafka listener's settings: Kafka's `listeners` / `advertised.listeners` syntax, checked.

    listeners = "PLAINTEXT://127.0.0.1:9092"
    advertised.listeners = "PLAINTEXT://localhost:9092"     # what Metadata tells clients

One listener, security protocol PLAINTEXT or SASL_PLAINTEXT (no TLS yet), a host (an
IPv4 or IPv6 address, IPv6 in brackets, or a name resolving to one) and a port (0: an
ephemeral one, what tests use). `listeners = ""` turns the listener off.

Who may connect: on PLAINTEXT, a peer on a loopback address must be a user who may
open the broker's control socket (auth.py, the peer uid check); a peer on another
address has no identity the gateway can check, so binding a non-loopback address is
refused unless `listener.allow.remote = true` says the operator accepts that anyone who
reaches the port is a client. On SASL_PLAINTEXT every client authenticates with a user
and password of `sasl.plain.users.file` (sasl.py), on any address.
"""
import ipaddress
import re
import socket
from dataclasses import dataclass

from odradek.client.errors import InvalidConfig
from odradek.daemon.gateway.sasl_users import PlainUsers

__all__ = ["Listener", "ListenerConfig", "parse_listeners", "listener_config", "bind", "is_loopback", "hostport"]

_LISTENER = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)://(?:\[(?P<v6>[^\]]+)\]|(?P<host>[^:/\[\]]*)):(?P<port>\d+)$")
SECURITY_PROTOCOLS = ("PLAINTEXT", "SASL_PLAINTEXT")


@dataclass(frozen=True)
class Listener:
    name: str          # the listener (and security protocol) name: PLAINTEXT
    host: str
    port: int

    @property
    def uri(self):
        return f"{self.name}://{hostport(self.host, self.port)}"


@dataclass(frozen=True)
class ListenerConfig:
    """Everything the broker needs to run the gateway."""
    listener: Listener
    advertised: Listener | None       # None: the bound address
    max_request_bytes: int
    max_connections: int
    idle_ms: int
    processes: int
    uid_check: bool
    allow_remote: bool
    sasl_users_file: str | None       # SASL_PLAINTEXT: the users (sasl.py)
    max_produce_rings: int            # per gateway process (produce_rings.py)

    @property
    def sasl(self):
        return self.listener.name == "SASL_PLAINTEXT"


def parse_listeners(key, raw):
    """The Listener of `raw` (Kafka's `NAME://host:port`), None for "", or InvalidConfig
    naming `key`."""
    parts = [p.strip() for p in raw.split(",") if p.strip()]
    if not parts:
        return None
    if len(parts) > 1:
        raise InvalidConfig(f"{key}={raw!r}: odradek serves one listener; give one NAME://host:port")
    m = _LISTENER.match(parts[0])
    if m is None:
        raise InvalidConfig(f"{key}={raw!r} is not valid; expected NAME://host:port like PLAINTEXT://127.0.0.1:9092 "
                            f"(an IPv6 host in brackets)")
    name, host, port = m["name"].upper(), m["v6"] or m["host"], int(m["port"])
    if name not in SECURITY_PROTOCOLS:
        raise InvalidConfig(f"{key}={raw!r}: listener {name} is not supported; odradek speaks "
                            f"{', '.join(SECURITY_PROTOCOLS)} only (no TLS yet)")
    if not host:
        raise InvalidConfig(f"{key}={raw!r}: give the host to bind (127.0.0.1 for this host only)")
    if port > 65535:
        raise InvalidConfig(f"{key}={raw!r}: port {port} is above 65535")
    return Listener(name, host, port)


def listener_config(settings, source):
    """The ListenerConfig of the broker's settings ({dotted key: parsed value}), None when
    `listeners` is empty; InvalidConfig names the key."""
    try:
        listener = parse_listeners("listeners", settings["listeners"])
        advertised = parse_listeners("advertised.listeners", settings["advertised.listeners"])
    except InvalidConfig as e:
        raise InvalidConfig(f"{source}: {e.message}") from None
    if listener is None:
        if advertised is not None:
            raise InvalidConfig(f"{source}: advertised.listeners is set but listeners is empty (no listener)")
        return None
    if advertised is not None and advertised.name != listener.name:
        raise InvalidConfig(f"{source}: advertised.listeners names {advertised.name}, listeners {listener.name}")
    users_file = settings["sasl.plain.users.file"] or None
    if listener.name == "SASL_PLAINTEXT":
        mechanisms = {m.strip() for m in settings["sasl.enabled.mechanisms"].split(",") if m.strip()}
        if mechanisms != {"PLAIN"}:
            raise InvalidConfig(f"{source}: sasl.enabled.mechanisms={settings['sasl.enabled.mechanisms']!r}: "
                                f"odradek offers PLAIN only")
        if users_file is None:
            raise InvalidConfig(f"{source}: listeners={listener.uri} needs sasl.plain.users.file (the users; "
                                f"'odradek sasl-password USER' makes a line)")
        try:
            PlainUsers.load(users_file)
        except InvalidConfig as e:
            raise InvalidConfig(f"{source}: {e.message}") from None
    elif users_file is not None:
        raise InvalidConfig(f"{source}: sasl.plain.users.file is set but listeners={listener.uri} is not "
                            f"SASL_PLAINTEXT")
    if not is_loopback(listener.host) and listener.name == "PLAINTEXT" and not settings["listener.allow.remote"]:
        raise InvalidConfig(
            f"{source}: listeners={listener.uri} accepts clients from other hosts, and odradek cannot tell "
            f"who they are on PLAINTEXT: bind 127.0.0.1, use SASL_PLAINTEXT, or set listener.allow.remote=true "
            f"to let anyone who reaches the port use the broker")
    if _wildcard(listener.host) and (advertised is None or _wildcard(advertised.host)):
        raise InvalidConfig(f"{source}: listeners={listener.uri} binds every address; set advertised.listeners "
                            f"to the host:port clients should use")
    return ListenerConfig(listener, advertised, settings["socket.request.max.bytes"], settings["max.connections"],
                          settings["connections.max.idle.ms"], settings["listener.processes"],
                          settings["listener.peer.uid.check"], settings["listener.allow.remote"], users_file,
                          settings["listener.max.produce.rings"])


def is_loopback(host):
    """Whether `host` (an address or a name) is only this host: 127.0.0.0/8, ::1 (with a
    scope or not), ::ffff:127.x.y.z, localhost."""
    if host == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return False
    return ip.is_loopback or (ip.version == 6 and ip.ipv4_mapped is not None and ip.ipv4_mapped.is_loopback)


def _wildcard(host):
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


def bind(listener, backlog=1024):
    """A listening TCP socket on the listener's host and port (inheritable: the gateway
    processes take it); OSError as socket.bind raises it."""
    infos = socket.getaddrinfo(listener.host, listener.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, _, _, _, addr = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(addr)
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return sock


def hostport(host, port):
    """`host:port` as clients write it in bootstrap.servers (IPv6 in brackets)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
