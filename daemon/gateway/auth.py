"""Who may use the Kafka listener: the control socket's rule, applied to TCP peers by uid.

The Unix control socket is guarded by its file: connect(2) needs write permission on
it (socket.mode, 0660 by default; its owner and group are the broker's), so the broker
serves exactly the users the file lets in. A TCP port has no such guard, so the gateway
asks the kernel who owns the connecting socket: for a peer on a loopback address, the
row of /proc/net/tcp (or tcp6) whose local address is the peer's and whose remote one
is ours carries the uid of the process that opened it. That uid is then judged as the
kernel would judge its connect(2) to the socket file (PeerRule):
- root may always connect;
- the file's owner: the owner's w bit; a member of the file's group (its primary
  group or a supplementary one in the group database): the group's w bit; anyone
  else: the others' w bit.
A connection refused is closed at once, before a byte is read, and logged with the uid.

Limits (README "The Kafka listener"): the uid is the socket's creator's (a socket
passed to another process keeps it); groups come from the group database, not the
peer process's own list (a `newgrp` or setgroups() is not seen); the permissions of
the directory holding the socket are not checked; a peer whose row cannot be found
(it closed already, another network namespace) is refused. Peers on other addresses
have no uid to read: they are admitted only when listener.allow.remote is set, and
then anyone who reaches the port is a client.
"""
import grp
import ipaddress
import os
import pwd
import stat
import struct

__all__ = ["PeerRule", "peer_uid", "Admission"]

_TCP_FILES = ("/proc/net/tcp", "/proc/net/tcp6")


class PeerRule:
    """The control socket file's rule: which uids may connect to it."""

    def __init__(self, socket_path):
        st = os.stat(socket_path)
        if not stat.S_ISSOCK(st.st_mode):
            raise ValueError(f"{socket_path} is not a socket")
        self.path, self.uid, self.gid, self.mode = socket_path, st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)

    def allows(self, uid):
        if uid == 0:
            return True
        if uid == self.uid:
            return bool(self.mode & 0o200)
        if self.gid in _groups_of(uid):
            return bool(self.mode & 0o020)
        return bool(self.mode & 0o002)

    def describe(self):
        return f"the users who may open {self.path} (uid {self.uid}, gid {self.gid}, mode {self.mode:04o})"


def _groups_of(uid):
    try:
        user = pwd.getpwuid(uid)
    except KeyError:
        return set()        # no such user in the database: only the others' bits apply
    return {user.pw_gid} | {g.gr_gid for g in grp.getgrall() if user.pw_name in g.gr_mem}


def _proc_address(host, port):
    """The `ADDR:PORT` spelling of /proc/net/tcp{,6}: the address as 32-bit words in host
    byte order, in hex, then the port in hex. Both spellings an IPv4 address may have
    (tcp, and tcp6 as ::ffff:a.b.c.d for a dual-stack socket)."""
    ip = ipaddress.ip_address(host.split("%")[0])
    out = []
    if ip.version == 4:
        out.append("%08X:%04X" % (struct.unpack("=I", ip.packed)[0], port))
        ip = ipaddress.IPv6Address(b"\0" * 10 + b"\xff\xff" + ip.packed)
    elif ip.ipv4_mapped is not None:
        out.append("%08X:%04X" % (struct.unpack("=I", ip.ipv4_mapped.packed)[0], port))
    out.append("".join("%08X" % w for w in struct.unpack("=4I", ip.packed)) + ":%04X" % port)
    return out


def peer_uid(sock, peer):
    """The uid owning the other end of the loopback TCP connection `sock` (accepted from
    `peer`), or None when no row of /proc/net/tcp{,6} has it."""
    ours = sock.getsockname()
    for theirs_key in _proc_address(peer[0], peer[1]):
        for our_key in _proc_address(ours[0], ours[1]):
            if len(our_key) != len(theirs_key):
                continue
            needle = f" {theirs_key} {our_key} "
            path = _TCP_FILES[0] if len(our_key) == 13 else _TCP_FILES[1]
            try:
                with open(path) as f:
                    table = f.read()
            except OSError:
                continue
            at = table.find(needle)
            if at < 0:
                continue
            line = table[at:table.find("\n", at)].split()
            # sl local rem st tx:rx tr:when retrnsmt uid ...: the needle starts at "local"
            return int(line[6])
    return None


class Admission:
    """`admit(sock, peer) -> (ok, uid, why)`: the gateway's door (server.Gateway.admit)."""

    def __init__(self, rule, uid_check=True, allow_remote=False):
        self.rule, self.uid_check, self.allow_remote = rule, uid_check, allow_remote

    def __call__(self, sock, peer):
        if not _is_loopback(peer[0]):
            if self.allow_remote:
                return True, None, ""
            return False, None, "a non-loopback peer, and listener.allow.remote is false"
        if not self.uid_check:
            return True, None, ""
        uid = peer_uid(sock, peer)
        if uid is None:
            return False, None, "its socket's owner is not in /proc/net/tcp (gone already?)"
        if not self.rule.allows(uid):
            return False, uid, f"uid {uid} is not among {self.rule.describe()}"
        return True, uid, ""


def _is_loopback(host):
    try:
        ip = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return False
    return ip.is_loopback or (ip.version == 6 and ip.ipv4_mapped is not None and ip.ipv4_mapped.is_loopback)

