"""Who may use the Kafka listener: the control socket's rule, applied to TCP peers by uid.

The Unix control socket is guarded by its file: connect(2) needs write permission on
it (socket.mode, 0660 by default; its owner and group are the broker's), so the broker
serves exactly the users the file lets in. A TCP port has no such guard, so the gateway
asks the kernel who owns the connecting socket: for a peer on a loopback address,
sock_diag (netlink, what `ss -e` uses) looks up the socket whose local address is the
peer's and whose remote one is ours, by that 4-tuple, and gives the uid of the process
that opened it (an exact lookup: it costs the same however many sockets the host has,
where reading /proc/net/tcp walks them all). That uid is then judged as the
kernel would judge its connect(2) to the socket file (PeerRule):
- root may always connect;
- the file's owner: the owner's w bit; a member of the file's group (its primary
  group or a supplementary one in the group database): the group's w bit; anyone
  else: the others' w bit.
A connection refused is closed at once, before a byte is read, and logged with the uid.

Limits (README "The Kafka listener"): the uid is the socket's creator's (a socket
passed to another process keeps it); groups come from the group database, not the
peer process's own list (a `newgrp` or setgroups() is not seen); the permissions of
the directory holding the socket are not checked; a peer whose socket cannot be found
(it closed already, another network namespace) is refused. Peers on other addresses
have no uid to read: they are admitted only when listener.allow.remote is set, and
then anyone who reaches the port is a client.
"""
import grp
import os
import pwd
import socket
import stat
import struct

from odradek.daemon.gateway.listeners import is_loopback

__all__ = ["PeerRule", "peer_uid", "Admission"]


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


# sock_diag (linux/sock_diag.h, linux/inet_diag.h): one socket looked up by its 4-tuple
_NETLINK_SOCK_DIAG = 4
_SOCK_DIAG_BY_FAMILY = 20
_NLM_F_REQUEST = 1
_NLMSG_ERROR = 2
_NLMSG = struct.Struct("=IHHII")                    # len, type, flags, seq, pid
_DIAG_REQ = struct.Struct("=BBBxI")                 # family, protocol, ext, pad, states
_SOCKID = struct.Struct(">HH16s16s")                # sport, dport (network order), src, dst
_SOCKID_TAIL = struct.Struct("=III")                # interface, cookie[2]
_DIAG_MSG = struct.Struct("=BBBB48sIIIII")          # family, state, timer, retrans, id, expires, rq, wq, uid, inode
_NO_COOKIE = 0xFFFFFFFF
_ALL_STATES = 0xFFFFFFFF


def _diag_uid(family, local, remote):
    """The uid of the TCP socket whose local address is `local` and remote one `remote`
    ((packed address, port) each, in `family`), from the kernel's exact lookup; None if
    there is none."""
    request = (_DIAG_REQ.pack(family, socket.IPPROTO_TCP, 0, _ALL_STATES)
               + _SOCKID.pack(local[1], remote[1], local[0].ljust(16, b"\0"), remote[0].ljust(16, b"\0"))
               + _SOCKID_TAIL.pack(0, _NO_COOKIE, _NO_COOKIE))
    message = _NLMSG.pack(_NLMSG.size + len(request), _SOCK_DIAG_BY_FAMILY, _NLM_F_REQUEST, 1, 0) + request
    with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC, _NETLINK_SOCK_DIAG) as nl:
        nl.settimeout(5)
        nl.sendto(message, (0, 0))
        reply = nl.recv(8192)
    _, kind, _, _, _ = _NLMSG.unpack_from(reply, 0)
    if kind == _NLMSG_ERROR or len(reply) < _NLMSG.size + _DIAG_MSG.size:
        return None         # ENOENT: no such socket
    return _DIAG_MSG.unpack_from(reply, _NLMSG.size)[8]


def peer_uid(sock, peer):
    """The uid owning the other end of the loopback TCP connection `sock` (accepted from
    `peer`), or None when the kernel has no such socket (any more)."""
    ours = sock.getsockname()
    family = sock.family
    theirs = (socket.inet_pton(family, peer[0].split("%")[0]), peer[1])
    mine = (socket.inet_pton(family, ours[0].split("%")[0]), ours[1])
    return _diag_uid(family, theirs, mine)     # a dual-stack client's (::ffff:a.b.c.d) too


class Admission:
    """`admit(sock, peer) -> (ok, uid, why)`: the gateway's door (server.Gateway.admit)."""

    def __init__(self, rule, uid_check=True, allow_remote=False):
        self.rule, self.uid_check, self.allow_remote = rule, uid_check, allow_remote

    def __call__(self, sock, peer):
        if not is_loopback(peer[0]):
            if self.allow_remote:
                return True, None, ""
            return False, None, "a non-loopback peer, and listener.allow.remote is false"
        if not self.uid_check:
            return True, None, ""
        uid = peer_uid(sock, peer)
        if uid is None:
            return False, None, "the kernel has no socket of that address (gone already?)"
        if not self.rule.allows(uid):
            return False, uid, f"uid {uid} is not among {self.rule.describe()}"
        return True, uid, ""

