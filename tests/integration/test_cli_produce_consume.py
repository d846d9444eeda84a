"""`odradek produce` and `odradek consume` against the real broker: lines in, lines out,
as kafka-console-producer/consumer do (CliRunner in this process; a subprocess where a
signal is needed)."""
import os
import re
import select
import signal
import subprocess
import sys
import time

from click.testing import CliRunner

from odradek.daemon.cli import cli

SAFETY = ["--timeout", "5"]      # a consume that should stop earlier must never hang the suite
# (put first: a later --timeout in a test's own options wins, as click takes the last one)


def run(broker, *args, input=None):
    return CliRunner().invoke(cli, [str(a) for a in args] + ["--socket", broker.socket_path], input=input)


def create(broker, name, partitions=1):
    r = run(broker, "topics", "create", name, "--partitions", partitions)
    assert r.exit_code == 0, r.output


def produce(broker, topic, lines, *options):
    r = run(broker, "produce", topic, *options, input=lines)
    assert r.exit_code == 0, r.stderr
    assert r.stdout == "" and r.stderr == ""
    return r


def consume(broker, topic, *options):
    r = run(broker, "consume", topic, *SAFETY, *options)
    assert r.exit_code == 0, r.stderr
    return r.stdout.splitlines()


def one_error_line(r, *fragments):
    assert r.exit_code == 1, (r.exit_code, r.output)
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("odradek: error: "), r.stderr
    assert "Traceback" not in r.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def test_lines_produced_come_back_in_order_from_the_beginning(broker):
    create(broker, "orders")
    produce(broker, "orders", "first\nsecond\n\nfourth, after an empty line\r\nlast without newline")
    out = consume(broker, "orders", "--from-beginning", "--max-messages", 5)
    assert out == ["first", "second", "", "fourth, after an empty line", "last without newline"]
    # --max-messages stops early; the rest is still there for the next reader
    assert consume(broker, "orders", "--from-beginning", "--max-messages", 2) == ["first", "second"]


def test_keys_split_at_the_first_separator_and_stay_on_one_partition(broker):
    create(broker, "keyed", partitions=3)
    produce(broker, "keyed", "user-1:a\nuser-2:b\nuser-1:c:with:colons\n", "--key-separator", ":")
    out = consume(broker, "keyed", "--from-beginning", "--max-messages", 3, "--print-key", "--print-partition")
    rows = [line.split("\t") for line in out]
    assert sorted((k, v) for _p, k, v in rows) == [("user-1", "a"), ("user-1", "c:with:colons"), ("user-2", "b")]
    assert len({p for p, k, _v in rows if k == "user-1"}) == 1
    # within the key's partition, the order of the lines is kept
    assert [v for _p, k, v in rows if k == "user-1"] == ["a", "c:with:colons"]


def test_headers_are_added_to_every_record(broker):
    create(broker, "traced")
    produce(broker, "traced", "a\nb\n", "--header", "trace=abc", "--header", "env=dev=1")
    out = consume(broker, "traced", "--from-beginning", "--max-messages", 2, "--print-headers")
    assert out == ["trace:abc,env:dev=1\ta", "trace:abc,env:dev=1\tb"]
    produce(broker, "traced", "c\n")
    out = consume(broker, "traced", "--partition", 0, "--offset", 2, "--max-messages", 1, "--print-headers")
    assert out == ["NO_HEADERS\tc"]


def test_partition_and_offset_choose_where_to_write_and_read(broker):
    create(broker, "spread", partitions=3)
    produce(broker, "spread", "x0\nx1\nx2\n", "--partition", 2, "--acks", "1")
    out = consume(broker, "spread", "--partition", 2, "--from-beginning", "--max-messages", 3, "--print-partition")
    assert out == ["Partition:2\tx0", "Partition:2\tx1", "Partition:2\tx2"]
    assert consume(broker, "spread", "--partition", 2, "--offset", 1, "--max-messages", 2) == ["x1", "x2"]
    r = run(broker, "consume", "spread", "--partition", 0, "--from-beginning", "--timeout", "0.3")
    assert r.exit_code == 0 and r.stdout == ""


def test_print_offset_timestamp_key_prefixes_follow_kafka_console_consumer(broker):
    create(broker, "fmt")
    before = int(time.time() * 1000)
    produce(broker, "fmt", "k|v\n|empty key\n", "--key-separator", "|")
    after = int(time.time() * 1000)
    out = consume(broker, "fmt", "--from-beginning", "--max-messages", 2, "--print-timestamp", "--print-partition",
                  "--print-offset", "--print-key")
    assert len(out) == 2
    for i, (line, (key, value)) in enumerate(zip(out, [("k", "v"), ("", "empty key")])):
        m = re.fullmatch(r"CreateTime:(\d+)\tPartition:0\tOffset:(\d+)\t(.*)\t(.*)", line)
        assert m, line
        assert before - 1000 <= int(m[1]) <= after + 1000
        assert (int(m[2]), m[3], m[4]) == (i, key, value)
    # another separator; a record without a key prints null
    produce(broker, "fmt", "keyless\n")
    out = consume(broker, "fmt", "--partition", 0, "--offset", 2, "--max-messages", 1, "--print-key",
                  "--print-offset", "--key-separator", " | ")
    assert out == ["Offset:2 | null | keyless"]


def test_values_are_bytes_in_and_bytes_out(broker):
    create(broker, "binary")
    data = "naïve ☃\n".encode() + b"\xff\xfe raw\n"
    r = CliRunner().invoke(cli, ["produce", "binary", "--socket", broker.socket_path], input=data)
    assert r.exit_code == 0, r.stderr
    r = CliRunner().invoke(cli, ["consume", "binary", "--from-beginning", "--max-messages", "2", *SAFETY,
                                 "--socket", broker.socket_path])
    assert r.exit_code == 0 and r.stdout_bytes == data


def test_default_start_is_the_end_so_old_records_are_not_printed(broker):
    create(broker, "tail")
    produce(broker, "tail", "old\n")
    r = run(broker, "consume", "tail", "--timeout", "0.3")
    assert r.exit_code == 0 and r.stdout == ""


def test_timeout_exits_zero_without_records(broker):
    create(broker, "quiet", partitions=2)
    t0 = time.monotonic()
    r = run(broker, "consume", "quiet", "--from-beginning", "--timeout", "0.4")
    took = time.monotonic() - t0
    assert r.exit_code == 0 and r.stdout == "" and r.stderr == ""
    assert 0.35 <= took < 3, took


def test_unknown_topic_is_one_error_line(broker):
    line = one_error_line(run(broker, "consume", "missing", "--from-beginning", *SAFETY), "missing",
                          "does not exist")
    assert "odradek topics create missing" in line
    one_error_line(run(broker, "produce", "missing", input="a\n"), "missing", "does not exist")
    create(broker, "small", partitions=2)
    one_error_line(run(broker, "consume", "small", "--partition", 5, *SAFETY), "no partition 5")
    one_error_line(run(broker, "produce", "small", "--partition", 5, input="a\n"), "no partition 5")


def test_a_line_without_the_key_separator_stops_with_its_line_number(broker):
    create(broker, "strict")
    r = run(broker, "produce", "strict", "--key-separator", ":", input="k:1\nk:2\nno separator here\nk:4\n")
    one_error_line(r, "line 3", "no key separator", "no separator here")
    # the lines before it were delivered, the ones after it were not read
    assert consume(broker, "strict", "--from-beginning", "--timeout", "0.5", "--print-key") == ["k\t1", "k\t2"]


def test_a_record_the_broker_refuses_is_one_error_line_naming_its_line(broker):
    create(broker, "limits")
    too_big = b"x" * (2 << 20)     # over the default max.message.bytes (1 MiB)
    r = CliRunner().invoke(cli, ["produce", "limits", "--socket", broker.socket_path], input=too_big + b"\n")
    line = one_error_line(r, "line 1")
    assert re.search(r"MESSAGE_TOO_LARGE|too large|exceeds", line, re.IGNORECASE), line


def test_a_failed_delivery_is_one_error_line_naming_its_line_and_error(broker):
    """A record the leader refuses after the produce call (a keyless record to a compacted
    topic): the delivery report's error, named, with the line it came from."""
    r = run(broker, "topics", "create", "compacted", "--config", "cleanup.policy=compact")
    assert r.exit_code == 0, r.output
    line = one_error_line(run(broker, "produce", "compacted", input="no key\n"), "line 1", "not delivered",
                          "INVALID_RECORD: ")
    assert "bound method" not in line


def test_usage_mistakes_exit_2_with_one_line(broker):
    for args in (["consume", "t", "--offset", "5"], ["consume", "t", "--partition", 0, "--offset", "-3"],
                 ["consume", "t", "--partition", 0, "--offset", 1, "--from-beginning"],
                 ["produce", "t", "--header", "novalue"], ["produce", "t", "--acks", "2"]):
        r = run(broker, *args)
        assert r.exit_code == 2, (args, r.output)
        assert len(r.stderr.splitlines()) == 1 and r.stderr.startswith("odradek: error: "), r.stderr


def test_ctrl_c_stops_a_live_consumer_quietly_with_status_130(broker):
    create(broker, "live")
    env = dict(os.environ, ODRADEK_SOCKET=broker.socket_path)
    proc = subprocess.Popen([sys.executable, "-m", "odradek.daemon.cli", "consume", "live"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        # the consumer starts at the end: keep producing until it shows a record (then it is
        # surely in its loop, past start-up), with a deadline
        deadline = time.monotonic() + 10
        seen = b""
        while b"ping" not in seen:
            assert time.monotonic() < deadline, "the consumer printed nothing within 10 s"
            assert proc.poll() is None, proc.stderr.read()
            produce(broker, "live", "ping\n")
            if select.select([proc.stdout], [], [], 0.2)[0]:
                seen += os.read(proc.stdout.fileno(), 4096)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
        assert proc.returncode == 130, (proc.returncode, err)
        assert err == b"", err.decode()
        assert set((seen + out).split()) == {b"ping"}
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
