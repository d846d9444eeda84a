"""Shared by the client benchmarks (producer_perf.py, consumer_perf.py,
end_to_end_latency.py): a broker to talk to, a topic to use, Kafka-style property
parsing, and the machine's memcpy rate to compare against.

    with broker_socket(args.socket) as sock, topic(sock, args.topic, partitions=3) as name:
        ...

broker_socket: --socket if given, else $ODRADEK_SOCKET, else a throwaway broker
(`python -m odradek.daemon.cli serve --data-dir TMP`, TMP under $TMPDIR; with
log_dirs=N, N log dirs TMP, TMP-1, ... as `--override log.dirs=...`) started here,
waited for until its socket answers, and stopped with SIGTERM (its dir removed) at the
end, so a bare checkout with the venv can run any benchmark with no set-up.
"""
import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

from odradek.client import Admin
from odradek.client.errors import TopicAlreadyExists, UnknownTopicOrPartition

__all__ = ["broker_socket", "topic", "parse_props", "memcpy_mb_per_s", "percentile", "run", "MB", "log",
           "stop_process", "join_or_terminate"]

MB = 1024 * 1024          # Kafka's perf tools divide bytes by 1024*1024 and call it MB
START_TIMEOUT_S = 60
STOP_TIMEOUT_S = 60


def log(message):
    """Set-up chatter goes to stderr, so stdout holds only the results."""
    print(message, file=sys.stderr, flush=True)


def _answers(path, proc=None):
    if proc is not None and proc.poll() is not None:
        raise SystemExit(f"the throwaway broker exited with status {proc.returncode} at start")
    try:
        with Admin(path, timeout=5) as admin:
            admin.list_topics()
        return True
    except Exception:
        return False


@contextlib.contextmanager
def broker_socket(socket_path=None, overrides=(), log_dirs=1, log_level="warning", stderr_path=None):
    """Yield the control socket of a running broker (see the module doc). `overrides`:
    KEY=VALUE broker configs for a throwaway broker (serve --override); `log_dirs`: how
    many log dirs it gets (replicas go to distinct dirs, so this bounds their number);
    `log_level`: its --log-level; `stderr_path`: a file its stderr (the log of the broker
    and its workers) goes to and stays in (default: one removed with its dir)."""
    path = socket_path or os.environ.get("ODRADEK_SOCKET")
    if path:
        if not _answers(path):
            raise SystemExit(f"no broker answers on {path}; start one with 'odradek serve', or leave "
                             f"out --socket (and unset ODRADEK_SOCKET) to have a throwaway one started")
        yield path
        return
    base = tempfile.mkdtemp(prefix="odradek-perf-")
    data = os.path.join(base, "data")
    path = os.path.join(data, "odradek.sock")
    err_path = stderr_path or os.path.join(base, "broker.err")
    if log_dirs > 1:
        dirs = [data] + [f"{data}-{i}" for i in range(1, log_dirs)]
        overrides = (f"log.dirs={','.join(dirs)}", *overrides)
    with open(err_path, "wb") as err:
        # no Kafka listener unless asked for (dev mode's default): the figures are the broker's
        extra = [a for kv in ("listeners=", *overrides) for a in ("--override", kv)]
        proc = subprocess.Popen([sys.executable, "-m", "odradek.daemon.cli", "serve", "--data-dir", data,
                                 "--log-level", log_level, *extra], stdout=subprocess.DEVNULL, stderr=err)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _answers(path, proc):
            if time.monotonic() > deadline:
                raise SystemExit(f"the throwaway broker did not answer within {START_TIMEOUT_S} s")
            time.sleep(0.01)
        log(f"started a throwaway broker (pid {proc.pid}) on {data}"
            + (f" and {log_dirs - 1} more log dirs beside it" if log_dirs > 1 else ""))
        yield path
    finally:
        stop_process(proc, STOP_TIMEOUT_S)
        if proc.returncode not in (0, None):
            with open(err_path, "rb") as f:
                tail = f.read()[-2000:].decode(errors="replace")
            log(f"the throwaway broker exited with status {proc.returncode}:\n{tail}")
        shutil.rmtree(base, ignore_errors=True)


def stop_process(proc, timeout_s):
    """Stop a subprocess.Popen started here, by its pid: SIGTERM, then SIGKILL after
    `timeout_s`."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def join_or_terminate(procs, timeout_s=30):
    """Wait for multiprocessing children that were told to finish; terminate any still
    alive after `timeout_s`."""
    for p in procs:
        p.join(timeout_s)
    for p in procs:
        if p.is_alive():
            p.terminate()
            p.join(10)


@contextlib.contextmanager
def topic(socket_path, name=None, partitions=None, prefix="perf", replication_factor=None, configs=None):
    """Yield a topic name: `name` (created with `partitions` partitions, default the
    broker's num.partitions, if it does not exist), or a temporary topic created now and
    deleted at the end. A topic created here gets `replication_factor` (default the
    broker's default.replication.factor) and the topic `configs` ({key: value})."""
    count = -1 if partitions is None else partitions
    factor = -1 if replication_factor is None else replication_factor
    with Admin(socket_path, timeout=120) as admin:
        if name is not None:
            try:
                admin.describe_topic(name)
            except UnknownTopicOrPartition:
                try:
                    admin.create_topic(name, count, factor, configs)
                    log(f"created topic {name} ({partitions or 'default'} partitions)")
                except TopicAlreadyExists:
                    pass
            yield name
            return
        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        admin.create_topic(name, count, factor, configs)
        try:
            yield name
        finally:
            try:
                admin.delete_topic(name)
            except Exception as e:          # the broker went away: nothing left to clean up
                log(f"could not delete the temporary topic {name}: {e}")


def _value(text):
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_props(pairs):
    """['acks=1', 'linger.ms=5'] -> {'acks': 1, 'linger.ms': 5}: numbers and booleans
    converted, anything else kept as text (acks=all)."""
    out = {}
    for pair in pairs or ():
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"--producer-props: {pair!r} is not KEY=VALUE (e.g. acks=1 linger.ms=5)")
        out[key.strip()] = _value(value.strip())
    return out


def memcpy_mb_per_s(size=64 << 20, repeat=5):
    """The machine's raw copy rate in MB/s (MB = 2**20 bytes, as the perf tools count):
    a `size`-byte bytearray slice assignment (one memcpy), median of `repeat` timed
    copies after one untimed (both buffers already touched, so no page faults)."""
    src = bytearray(os.urandom(1 << 20)) * (size >> 20)
    dst = bytearray(len(src))
    dst[:] = src
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        dst[:] = src
        times.append(time.perf_counter() - t0)
    return len(src) / MB / statistics.median(times)


def paced(num_records, rate):
    """Yield 0 .. num_records-1, i no sooner than start + i/rate (CLOCK_MONOTONIC): it
    sleeps when ahead and yields at once when behind (a deadline loop, as the latency
    tools pace their producers)."""
    interval = 1e9 / rate
    now = time.monotonic_ns
    start = now()
    for i in range(num_records):
        due = start + int(i * interval)
        t = now()
        if t < due:
            time.sleep((due - t) / 1e9)
        yield i


def with_reader_process(target, args, produce, ready_timeout_s, done_timeout_s):
    """The latency tools' two-process run: start `target(conn, *args)` in a fresh (spawn)
    process, wait up to ready_timeout_s for it to send ("ready", _), call produce(), wait
    up to done_timeout_s for ("done", payload). Returns (what produce() returned, payload);
    SystemExit with the reader's complaint if it fails or says nothing. The reader is
    terminated (by its pid) if it is still there at the end."""
    import multiprocessing as mp
    parent, child = mp.get_context("spawn").Pipe()
    proc = mp.get_context("spawn").Process(target=target, args=(child, *args), daemon=True)
    proc.start()
    try:
        if not parent.poll(ready_timeout_s):
            raise SystemExit(f"the consumer process did not get ready within {ready_timeout_s:.0f} s")
        kind, payload = parent.recv()
        if kind != "ready":
            raise SystemExit(f"the consumer process failed: {payload}")
        produced = produce()
        if not parent.poll(done_timeout_s):
            raise SystemExit("the consumer process did not report")
        kind, payload = parent.recv()
        if kind != "done":
            raise SystemExit(f"the consumer process failed: {payload}")
        proc.join(30)
        return produced, payload
    finally:
        if proc.is_alive():
            proc.terminate()
            proc.join(10)


def percentile(sorted_values, p):
    """Kafka's ProducerPerformance percentile: the value at index int(p * n)."""
    if not sorted_values:
        return 0
    return sorted_values[min(len(sorted_values) - 1, int(p * len(sorted_values)))]


def run(main):
    """Run a benchmark's main(): an odradek error (a bad --producer-props key, an unknown
    topic, a broker that went away) is one line on stderr and exit status 1; Ctrl-C is
    exit status 130. The context managers above clean up on the way out either way."""
    from odradek.client.errors import OdradekError
    try:
        main()
    except OdradekError as e:
        log(f"error: {e}")
        sys.exit(1)
    except KeyboardInterrupt:
        log("interrupted")
        sys.exit(130)
