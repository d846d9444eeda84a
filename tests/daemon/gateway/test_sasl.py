"""SASL/PLAIN on a SASL_PLAINTEXT listener: Kafka's handshake and authenticate, what is
refused before and after, and the users file."""
import pytest
from click.testing import CliRunner
from kio.schema.api_versions.v0.request import ApiVersionsRequest as ApiVersionsV0
from kio.schema.describe_cluster.v0.request import DescribeClusterRequest as DescribeClusterV0
from kio.schema.errors import ErrorCode
from kio.schema.sasl_authenticate.v2.request import SaslAuthenticateRequest
from kio.schema.sasl_handshake.v1.request import SaslHandshakeRequest

from odradek.client.errors import InvalidConfig
from odradek.daemon.broker.config import BrokerConfig
from odradek.daemon.cli.root import cli
from odradek.daemon.gateway.sasl_users import PlainUsers, hash_password
from support.broker import stop_cleanly
from support.gateway import KafkaWire, closed_by_peer, listener_broker

PASSWORD = "s3cret"


@pytest.fixture(scope="module")
def users_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("sasl") / "users"
    result = CliRunner().invoke(cli, ["sasl-password", "alice", "--password-stdin"], input=PASSWORD + "\n")
    assert result.exit_code == 0, result.output
    path.write_text("# Kafka clients\n" + result.output + f"bob:{hash_password('other', iterations=1000)}\n")
    return path


@pytest.fixture(scope="module")
def broker(tmp_path_factory, users_file):
    b = listener_broker(tmp_path_factory.mktemp("sasl-broker") / "data",
                        **{"listeners": "SASL_PLAINTEXT://127.0.0.1:0", "sasl.plain.users.file": users_file})
    yield b
    stop_cleanly(b)


def _login(wire, user="alice", password=PASSWORD):
    assert wire.call(SaslHandshakeRequest(mechanism="PLAIN")).error_code == ErrorCode.none
    return wire.call(SaslAuthenticateRequest(auth_bytes=b"\0" + user.encode() + b"\0" + password.encode()))


def test_authenticated_clients_are_served(broker):
    with KafkaWire(broker.port) as wire:
        served = {a.api_key for a in wire.call(ApiVersionsV0()).api_keys}     # ApiVersions before auth
        assert {17, 36} <= served
        r = _login(wire)
        assert r.error_code == ErrorCode.none and r.session_lifetime.total_seconds() == 0
        assert wire.call(DescribeClusterV0(include_cluster_authorized_operations=False)).error_code == ErrorCode.none


def test_a_request_before_authentication_is_answered_illegal_sasl_state_then_closed(broker):
    with KafkaWire(broker.port) as wire:
        r = wire.call(DescribeClusterV0(include_cluster_authorized_operations=False))
        assert r.error_code == ErrorCode.illegal_sasl_state
        assert closed_by_peer(wire.sock)


@pytest.mark.parametrize("user,password", [("alice", "wrong"), ("mallory", PASSWORD), ("bob", PASSWORD)])
def test_a_wrong_user_or_password_fails_and_closes(broker, user, password):
    with KafkaWire(broker.port) as wire:
        r = _login(wire, user, password)
        assert r.error_code == ErrorCode.sasl_authentication_failed and "Authentication failed" in r.error_message
        assert closed_by_peer(wire.sock)


def test_an_authorization_id_other_than_the_user_fails(broker):
    with KafkaWire(broker.port) as wire:
        wire.call(SaslHandshakeRequest(mechanism="PLAIN"))
        r = wire.call(SaslAuthenticateRequest(auth_bytes=b"bob\0alice\0" + PASSWORD.encode()))
        assert r.error_code == ErrorCode.sasl_authentication_failed


def test_unsupported_mechanism_lists_plain_and_a_second_handshake_is_illegal(broker):
    with KafkaWire(broker.port) as wire:
        r = wire.call(SaslHandshakeRequest(mechanism="SCRAM-SHA-256"))
        assert r.error_code == ErrorCode.unsupported_sasl_mechanism and list(r.mechanisms) == ["PLAIN"]
        assert _login(wire).error_code == ErrorCode.none
        assert wire.call(SaslHandshakeRequest(mechanism="PLAIN")).error_code == ErrorCode.illegal_sasl_state
        assert closed_by_peer(wire.sock)


def test_librdkafka_authenticates_unmodified(broker):
    """confluent-kafka with Kafka's client settings: the right password gets past SASL (its
    Metadata request is the next step), a wrong one is told why."""
    confluent_kafka = pytest.importorskip("confluent_kafka")
    from confluent_kafka.admin import AdminClient
    for password, refused in ((PASSWORD, False), ("wrong", True)):
        errors = []
        admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{broker.port}", "security.protocol": "SASL_PLAINTEXT",
                             "sasl.mechanism": "PLAIN", "sasl.username": "alice", "sasl.password": password,
                             "error_cb": errors.append, "log_level": 0})
        failures = broker.stderr(None).count("authentication failed for 'alice'")
        try:
            admin.list_topics(timeout=3)
        except confluent_kafka.KafkaException:
            pass           # without a Metadata handler (or with the wrong password)
        admin.poll(0.5)
        auth = [e for e in errors if e.code() == confluent_kafka.KafkaError._AUTHENTICATION]
        assert bool(auth) == refused, errors
        assert (broker.stderr(None).count("authentication failed for 'alice'") > failures) == refused
        if refused:
            assert "invalid username or password" in auth[0].str()


def test_sasl_on_plaintext_is_illegal(tmp_path):
    b = listener_broker(tmp_path / "data")
    try:
        with KafkaWire(b.port) as wire:
            assert wire.call(SaslHandshakeRequest(mechanism="PLAIN")).error_code == ErrorCode.illegal_sasl_state
            assert closed_by_peer(wire.sock)
    finally:
        stop_cleanly(b)


@pytest.mark.parametrize("text,message", [
    ("", "has no user"),
    ("alice\n", "line 1: expected USER:pbkdf2_sha256"),
    ("# c\nalice:pbkdf2_sha256$1$!!$AA==\n", "line 2"),
    (f"a:{hash_password('x', 10)}\na:{hash_password('y', 10)}\n", "each user once"),
])
def test_a_wrong_users_file_is_a_named_error(tmp_path, text, message):
    (tmp_path / "users").write_text(text)
    with pytest.raises(InvalidConfig, match=message):
        PlainUsers.load(str(tmp_path / "users"))


def test_sasl_config_errors(tmp_path, users_file):
    base = {"log.dirs": [str(tmp_path)]}
    with pytest.raises(InvalidConfig, match="needs sasl.plain.users.file"):
        BrokerConfig({**base, "listeners": "SASL_PLAINTEXT://127.0.0.1:9093"})
    with pytest.raises(InvalidConfig, match="is not SASL_PLAINTEXT"):
        BrokerConfig({**base, "listeners": "PLAINTEXT://127.0.0.1:9093", "sasl.plain.users.file": str(users_file)})
    with pytest.raises(InvalidConfig, match="PLAIN only"):
        BrokerConfig({**base, "listeners": "SASL_PLAINTEXT://127.0.0.1:9093", "sasl.enabled.mechanisms": "GSSAPI",
                      "sasl.plain.users.file": str(users_file)})
    with pytest.raises(InvalidConfig, match="No such file"):
        BrokerConfig({**base, "listeners": "SASL_PLAINTEXT://127.0.0.1:9093",
                      "sasl.plain.users.file": str(tmp_path / "none")})
    remote = BrokerConfig({**base, "listeners": "SASL_PLAINTEXT://10.1.2.3:9093",
                           "sasl.plain.users.file": str(users_file)}).listener
    assert remote.sasl and not remote.allow_remote


def test_sasl_password_refuses_what_the_file_cannot_hold():
    result = CliRunner().invoke(cli, ["sasl-password", "a:b", "--password-stdin"], input="x\n")
    assert result.exit_code == 2 and "no ':'" in result.output
