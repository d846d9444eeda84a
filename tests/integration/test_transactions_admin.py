"""The operator's view of transactions against a real broker: Admin.list_transactions /
describe_transactions, `odradek transactions list/describe` (hanging ones flagged, errors
one line), the last stable offset in Status and `topics describe`, and group lag measured
to it under read_committed."""
import os
import signal

import pytest
from click.testing import CliRunner
from support.broker import BrokerProcess, wait_until
from support.raw_producer import RawProducer
from support.txn_client import begin, call, create_topic, describe, leader_pid

from odradek.client import Admin
from odradek.client.errors import TransactionalIdNotFound
from odradek.client.protocol import ControlClient, messages as m
from odradek.daemon.cli import cli


def run(socket_path, *args):
    return CliRunner().invoke(cli, [str(a) for a in args] + ["--socket", socket_path])


@pytest.fixture
def quick_reaper(tmp_path):
    """A broker whose coordinator looks for timed-out transactions every 100 ms."""
    b = BrokerProcess(tmp_path / "data", args=[
        "--override", "transaction.abort.timed.out.transaction.cleanup.interval.ms=100"]).start()
    try:
        yield b
        assert b.stop() == 0
        assert not b.leftovers()
    finally:
        b.kill()


def test_admin_and_cli_show_open_done_and_hanging_transactions(quick_reaper):
    sock = quick_reaper.socket_path
    with ControlClient(sock, timeout=10) as c:
        create_topic(c, "t", 3)
        ongoing = begin(c, "ongoing", [("t", 0), ("t", 1)])
        done = begin(c, "done", [("t", 1)])
        call(c, m.EndTxnRequest(transactional_id="done", producer_id=done.producer_id,
                                producer_epoch=done.producer_epoch, committed=True))
        wait_until(lambda: describe(c, "done").transaction_state == "CompleteCommit", 15, what="the commit")
        quick_reaper.workers()                       # the test's record of them, to reap
        stopped = leader_pid(c, "t", 2)
        os.kill(stopped, signal.SIGSTOP)             # t-2 cannot take the abort's marker
        try:
            stuck = begin(c, "stuck", [("t", 2)], timeout_ms=200)
            with Admin(sock) as admin:
                assert [(t.transactional_id, t.producer_id, t.state) for t in admin.list_transactions()] == [
                    ("done", done.producer_id, "CompleteCommit"), ("ongoing", ongoing.producer_id, "Ongoing"),
                    ("stuck", stuck.producer_id, "Ongoing")]
                assert [t.transactional_id for t in admin.list_transactions(states=["Ongoing"])] == [
                    "ongoing", "stuck"]
                d = admin.describe_transactions(["ongoing"])["ongoing"]
                assert (d.state, d.producer_id, d.producer_epoch, sorted(d.partitions)) == (
                    "Ongoing", ongoing.producer_id, ongoing.producer_epoch, [("t", 0), ("t", 1)])
                assert d.start_time_ms is not None and not d.hanging(d.start_time_ms + d.timeout_ms)
                assert d.hanging(d.start_time_ms + d.timeout_ms + 1)
                assert not admin.describe_transactions(["done"])["done"].hanging(d.start_time_ms + 10 ** 9)
                with pytest.raises(TransactionalIdNotFound):
                    admin.describe_transactions(["nobody"])
                with pytest.raises(ValueError, match="Bogus"):
                    admin.list_transactions(states=["Bogus"])

            def hanging_row():
                r = run(sock, "transactions", "list")
                assert r.exit_code == 0, r.output
                return r.stdout if "PrepareAbort (HANGING)" in r.stdout else None
            out = wait_until(hanging_row, 10, interval=0.05, what="the stuck transaction to show as hanging")
            lines = out.splitlines()
            assert lines[0].split() == ["TRANSACTIONAL-ID", "STATE", "PRODUCER-ID", "EPOCH", "TIMEOUT-MS", "AGE",
                                        "PARTITIONS"]
            rows = {line.split()[0]: line.split() for line in lines[1:4]}
            assert rows["ongoing"][1:2] == ["Ongoing"] and rows["ongoing"][-1] == "t-0,t-1"
            assert rows["done"][1] == "CompleteCommit" and rows["done"][-2:] == ["-", "-"]   # none open
            assert rows["stuck"][1:3] == ["PrepareAbort", "(HANGING)"] and rows["stuck"][-1] == "t-2"
            assert "1 of 3 open longer than their timeout" in out

            r = run(sock, "transactions", "describe", "stuck")
            assert r.exit_code == 0 and "PrepareAbort (HANGING)" in r.stdout and "t-2" in r.stdout, r.output
        finally:
            os.kill(stopped, signal.SIGCONT)
        wait_until(lambda: describe(c, "stuck").transaction_state == "CompleteAbort", 15, what="the abort")
    r = run(sock, "transactions", "list", "--producer-id", ongoing.producer_id)
    assert r.exit_code == 0 and [ln.split()[0] for ln in r.stdout.splitlines()[1:]] == ["ongoing"], r.output
    r = run(sock, "transactions", "list", "--state", "PrepareCommit")
    assert r.exit_code == 0 and r.stdout == "No transactional ids match.\n", r.output

    r = run(sock, "transactions", "describe", "nobody")
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert len(r.stderr.splitlines()) == 1 and r.stderr.startswith("odradek: error: ") and "nobody" in r.stderr
    r = run(sock, "transactions", "list", "--state", "Bogus")
    assert r.exit_code == 2 and len(r.stderr.splitlines()) == 1 and "Bogus" in r.stderr, r.output
    r = run(sock, "transactions", "list", "--min-age", "soon")
    assert r.exit_code == 2 and len(r.stderr.splitlines()) == 1 and "--min-age" in r.stderr, r.output


def test_status_and_group_lag_under_read_committed_go_to_the_last_stable_offset(broker):
    sock = broker.socket_path
    with ControlClient(sock, timeout=10) as c:
        create_topic(c, "t", 1)
        with RawProducer(c, "t", 0) as plain:
            plain.send([b"a", b"b"])                                  # 0, 1
            txn = begin(c, "app", [("t", 0)])
            with RawProducer(c, "t", 0, txn.producer_id, txn.producer_epoch) as tp:
                tp.send([b"t1", b"t2", b"t3"], transactional=True)    # 2..4: open
            plain.send([b"c"])                                        # 5
    with Admin(sock) as admin:
        p = admin.status(["t"]).partitions[0]
        assert (p.high_watermark, p.last_stable_offset) == (6, 2)
        assert admin.list_offsets("t", 0, "latest", isolation_level="read_committed") == (2, -1)
        assert admin.list_offsets("t", 0, "latest")[0] == 6
        with pytest.raises(ValueError, match="isolation_level"):
            admin.list_offsets("t", 0, isolation_level="committed")
        admin.alter_group_offsets("g", {("t", 0): 1})
    r = run(sock, "groups", "describe", "g", "--isolation-level", "read_committed")
    assert r.exit_code == 0, r.output
    assert "Total lag: 1" in r.stdout
    r = run(sock, "groups", "describe", "g")
    assert r.exit_code == 0 and "Total lag: 5" in r.stdout, r.output
    r = run(sock, "consume", "t", "--from-beginning", "--timeout", "0.5", "--isolation-level", "read_committed")
    assert r.exit_code == 0 and r.stdout.splitlines() == ["a", "b"], r.output      # stops at the open one
    r = run(sock, "consume", "t", "--from-beginning", "--timeout", "0.5")
    assert r.exit_code == 0 and r.stdout.splitlines() == ["a", "b", "t1", "t2", "t3", "c"], r.output
    r = run(sock, "topics", "describe", "t")
    assert r.exit_code == 0, r.output
    header, row = [ln.split() for ln in r.stdout.splitlines()[1:3]]
    assert dict(zip(header, row))["LSO"] == "2" and dict(zip(header, row))["HW"] == "6"
