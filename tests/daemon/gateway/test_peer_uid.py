"""The listener's door: a loopback TCP peer is admitted only if its uid may open the
control socket (auth.py), checked with real sockets and, as root, a real other user,
who is told CLUSTER_AUTHORIZATION_FAILED before the close."""
import os
import socket
import stat
import struct

import pytest
from kio.schema.errors import ErrorCode

from odradek.daemon.gateway.auth import PeerRule, peer_uid
from support.broker import stop_cleanly, wait_until
from support.gateway import answers, frame, gateways, listener_broker

NOBODY = 65534
as_root = pytest.mark.skipif(os.getuid() != 0, reason="needs root to act as another uid (setuid, chown)")


@pytest.mark.parametrize("family,host,client_family,client_host", [
    (socket.AF_INET, "127.0.0.1", socket.AF_INET, "127.0.0.1"),
    (socket.AF_INET6, "::1", socket.AF_INET6, "::1"),
    (socket.AF_INET, "127.0.0.1", socket.AF_INET6, "::ffff:127.0.0.1"),     # a dual-stack client
])
def test_peer_uid_finds_the_connecting_sockets_owner(family, host, client_family, client_host):
    try:
        listen = socket.create_server((host, 0), family=family)
    except OSError as e:
        pytest.skip(f"no {host} here: {e}")
    client = socket.socket(client_family)
    client.connect((client_host, listen.getsockname()[1]))
    with listen, client:
        accepted, peer = listen.accept()
        with accepted:
            assert peer[1] == client.getsockname()[1]
            assert peer_uid(accepted, peer) == os.getuid()
    with socket.socket(family) as other:      # a socket of no connection: no row
        other.bind((host, 0))
        other.listen()
        with socket.create_connection((host, other.getsockname()[1]), timeout=5) as c2, other.accept()[0] as a2:
            assert peer_uid(a2, (host, c2.getsockname()[1] ^ 1)) is None


def _unix_socket(path, mode, uid=None, gid=None):
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(path))
    os.chmod(path, mode)
    if uid is not None:
        os.chown(path, uid, gid)
    return s


def test_the_rule_is_the_socket_files_mode(tmp_path):
    me = os.getuid()
    with _unix_socket(tmp_path / "a.sock", 0o600):
        rule = PeerRule(str(tmp_path / "a.sock"))
        assert rule.allows(me) and rule.allows(0)
        assert rule.allows(NOBODY) == (me == NOBODY)
    with _unix_socket(tmp_path / "b.sock", 0o666):
        assert PeerRule(str(tmp_path / "b.sock")).allows(NOBODY)
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="not a socket"):
        PeerRule(str(tmp_path / "file"))


@as_root
def test_the_owner_bits_decide_for_the_owner(tmp_path):
    with _unix_socket(tmp_path / "c.sock", 0o066, NOBODY, NOBODY):   # as for the kernel: owner bits first
        rule = PeerRule(str(tmp_path / "c.sock"))
        assert stat.S_IMODE(os.stat(tmp_path / "c.sock").st_mode) == 0o066
        assert not rule.allows(NOBODY)
        assert rule.allows(1)        # "others" (daemon, uid 1, is in no group of the file)


def _connect_as(uid, port):
    """In a child running as `uid`: connect, send ApiVersions v0; its exit status is the
    answer's error code (0: none; 255: the connection closed without an answer)."""
    pid = os.fork()
    if pid == 0:
        code = 254
        try:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            with socket.create_connection((b"127.0.0.1", port), timeout=10) as s:   # bytes: no idna codec to
                # import, which the user may not be able to read
                s.sendall(frame(18, 0, 1))
                size = s.recv(4, socket.MSG_WAITALL)
                answer = s.recv(struct.unpack(">i", size)[0], socket.MSG_WAITALL) if len(size) == 4 else b""
                code = struct.unpack_from(">ih", answer)[1] if len(answer) >= 6 else 255   # after the cid
                if code != 0:
                    code = code if s.recv(1) == b"" else 253    # then the gateway closes
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


@as_root
def test_another_user_is_refused_and_the_broker_user_is_not(tmp_path):
    broker = listener_broker(tmp_path / "data")      # socket.mode 0660, owned by root:root
    try:
        assert _connect_as(NOBODY, broker.port) == ErrorCode.cluster_authorization_failed.value
        wait_until(lambda: gateways(broker)[0].refused == 1, what="the refusal to be counted")
        assert f"uid {NOBODY} is not among the users who may open {broker.socket_path}" in broker.stderr(None)
        assert answers(broker.port)               # root (the broker's user) is let in
        assert gateways(broker)[0].refused == 1
    finally:
        stop_cleanly(broker)


@as_root
def test_without_the_uid_check_another_user_is_admitted(tmp_path):
    broker = listener_broker(tmp_path / "data", **{"listener.peer.uid.check": "false"})
    try:
        assert _connect_as(NOBODY, broker.port) == 0
    finally:
        stop_cleanly(broker)
