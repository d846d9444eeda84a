"""Issue 11's figures in one run, each as a ratio: this odradek against a previous
version of odradek, against Redis Streams + redis-py over loopback TCP, and against
memcpy, with the issue's target beside it.

    python perf/compare.py --base f806826              # 3 runs of every workload
    python perf/compare.py --runs 1 --quick            # a small, fast pass (about a minute)
    python perf/compare.py --base f806826 --json > figures.json

Workloads (one partition, acks=1; the producers with linger.ms=5 batch.size=262144
produce.ring.bytes=16777216 and a delivery callback on every 1,000th record, Redis
pipelining as many bytes): produce 100 B records
(records/sec) and 1 KiB records (MB/sec), two producer processes together, each to its
own partition (MB/sec per broker), consume 1 KiB records as Record objects and in zero-copy mode
(consumer config zero.copy=True) (MB/sec), consume 100 B records (records/sec), and the
end-to-end latency at 10,000 records/s with linger.ms=0 (p50, p99, p99.9 in us; of the
whole run, and where the script reports it, after its warm-up). MB =
2**20 bytes, as the perf tools count; the targets' GB are 1024 MB.

Each workload is run --runs times (default 3) for (a) this odradek: this interpreter
(the venv it is installed in) with perf/producer_perf.py, consumer_perf.py and
end_to_end_latency.py, each starting a throwaway broker; (b) the previous version
(--base, a git revision): `git archive` of it into $ODRADEK_PERF_CACHE (default
/tmp/odradek-perf-cache)/<sha>, built there once with its Makefile's `make install` (its
own .venv), and run with that venv's python, so against its own broker; with these
perf scripts when a tiny trial run shows they work with its client API, else with its
own (the choice is printed per script); (c) perf/redis_streams.py (redis-server started
and stopped per run); (d) memcpy: a bytearray slice assignment of the same total bytes
in this process (a 64 MiB buffer copied over and over; for the latency rows, the time
to copy one record's bytes), in the workload's unit. The runs interleave (a, b, c, d,
a, b, c, d, ...) so that the machine's noise hits all alike; the table shows medians.

Ratios are ours divided by theirs: for throughput above 1 is better, for latency below 1
is better. A variant that fails or refuses (the zero-copy row on an odradek without
zero.copy) shows "n/a" and why in the notes. Progress goes to stderr, the table (or with
--json one JSON document) to stdout. Needs redis-server and redis-py (`make perf-deps`)
unless --no-redis. A benchmark, not a test.
"""
import argparse
import contextlib
import fcntl
import io
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import time

from _broker import MB, log, run

PERF = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(PERF)
DEFAULT_BASE = "f806826"     # main just before issue 11's hot path work
JOB_TIMEOUT_S = 900
BUILD_TIMEOUT_S = 1800
# a delivery callback (a latency sample) on every 1,000th record, as a throughput run
# would; on every record the Python callbacks, not the producer, set the pace
LATENCY_EVERY = 1000
PRODUCER_PROPS = ["acks=1", "linger.ms=5", "batch.size=262144", "produce.ring.bytes=16777216"]
BATCH_BYTES = 262144         # the Redis pipeline, as batch.size above
LATENCY_RATE = 10000
LATENCY_RECORD = 100
SCRIPTS = ("producer_perf.py", "consumer_perf.py", "end_to_end_latency.py")

# job: one script run per variant, giving one or more rows. sizes: (full, quick).
JOBS = [
    {"job": "produce-100B", "kind": "produce", "size": 100, "records": (1_000_000, 100_000), "processes": 1},
    {"job": "produce-1KiB", "kind": "produce", "size": 1024, "records": (500_000, 50_000), "processes": 1},
    {"job": "produce-1KiB-x2", "kind": "produce", "size": 1024, "records": (1_000_000, 100_000), "processes": 2,
     "partitions": 2},
    {"job": "consume-1KiB", "kind": "consume", "size": 1024, "records": (500_000, 50_000)},
    {"job": "consume-1KiB-zero-copy", "kind": "consume", "size": 1024, "records": (500_000, 50_000),
     "props": ["zero.copy=true"], "redis_as": "consume-1KiB"},
    {"job": "consume-100B", "kind": "consume", "size": 100, "records": (1_000_000, 100_000)},
    {"job": "latency", "kind": "latency", "size": LATENCY_RECORD, "records": (50_000, 5_000)},
]
# row: (name, job, metric, unit, target, higher is better, target text)
ROWS = [
    ("produce 100 B", "produce-100B", "rps", "rec/s", 1_000_000, True, ">= 1,000,000 rec/s"),
    ("produce 1 KiB", "produce-1KiB", "mbps", "MB/s", 800, True, ">= 800 MB/s"),
    ("produce 1 KiB, 2 procs, 2 parts", "produce-1KiB-x2", "mbps", "MB/s", 1024, True, ">= 1 GB/s"),
    ("consume 1 KiB, Record", "consume-1KiB", "mbps", "MB/s", 1536, True, ">= 1.5 GB/s"),
    ("consume 1 KiB, zero-copy", "consume-1KiB-zero-copy", "mbps", "MB/s", 3072, True, ">= 3 GB/s"),
    ("consume 100 B", "consume-100B", "rps", "rec/s", 2_000_000, True, ">= 2,000,000 rec/s"),
    ("e2e latency p50 @10k/s", "latency", "p50", "us", 20, False, "<= 20 us"),
    ("e2e latency p99 @10k/s", "latency", "p99", "us", 100, False, "<= 100 us"),
    ("e2e latency p99.9 @10k/s", "latency", "p999", "us", 1000, False, "<= 1 ms"),
    ("  the same, after warm-up: p50", "latency", "p50_warm", "us", 20, False, "<= 20 us"),
    ("  p99", "latency", "p99_warm", "us", 100, False, "<= 100 us"),
    ("  p99.9", "latency", "p999_warm", "us", 1000, False, "<= 1 ms"),
]

PRODUCER_LINE = re.compile(r"^(\d+) records sent, ([\d.]+) records/sec \(([\d.]+) MB/sec\).*99\.9th\.$")
# "end-to-end latency: ..." (one line: the whole run), or "end-to-end latency, full run: ..." and
# "end-to-end latency, after the first N records: ..." (the run without its warm-up)
LATENCY_LINE = re.compile(r"^end-to-end latency(?:, ([^:]+))?: +avg ([\d.]+) us, p50 ([\d.]+) us, p99 ([\d.]+) us, "
                          r"p99\.9 ([\d.]+) us, max ([\d.]+) us")
RATE_LINE = re.compile(r" sent at ([\d.]+) records/s ")
PACE_SHORTFALL = 0.95        # a latency run whose producer fell below this share of the rate is flagged


# -- running a script ---------------------------------------------------------------------------

def run_script(argv, timeout=JOB_TIMEOUT_S):
    """(returncode, stdout, stderr). A run past `timeout` gets SIGINT (the perf scripts stop
    their brokers on it), then SIGKILL, sent to the process group it was started in."""
    env = {k: v for k, v in os.environ.items() if k not in ("ODRADEK_SOCKET", "PYTHONPATH")}
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            cwd=PERF, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            out, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
        return -1, out, (err or "") + f"\ntimed out after {timeout} s"
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGINT)
        proc.wait(60)
        raise
    return proc.returncode, out, err


def last_line_of(text):
    lines = [ln for ln in (text or "").strip().splitlines() if ln.strip()]
    return lines[-1][:300] if lines else "(no output)"


def parse_producer(out):
    found = [m for m in map(PRODUCER_LINE.match, out.splitlines()) if m]
    if not found:
        return None
    _, rps, mbps = found[-1].groups()
    return {"rps": float(rps), "mbps": float(mbps)}


def parse_consumer(out):
    lines = out.splitlines()
    for i, line in enumerate(lines[:-1]):
        if line.startswith("start.time, end.time"):
            fields = [f.strip() for f in lines[i + 1].split(",")]
            return {"mbps": float(fields[3]), "rps": float(fields[5])}
    return None


def parse_latency(out):
    """The whole run's figures (avg, p50, p99, p999, max) and, where the script also
    prints them, those after its warm-up (the same keys + "_warm")."""
    figures = {}
    for m in map(LATENCY_LINE.match, out.splitlines()):
        if not m:
            continue
        suffix = "_warm" if (m.group(1) or "").startswith("after") else ""
        avg, p50, p99, p999, mx = map(float, m.groups()[1:])
        figures.update({"avg" + suffix: avg, "p50" + suffix: p50, "p99" + suffix: p99, "p999" + suffix: p999,
                        "max" + suffix: mx})
    if "p50" not in figures:
        return None
    rate = [m for m in map(RATE_LINE.search, out.splitlines()) if m]
    if rate:
        figures["rate"] = float(rate[-1].group(1))
    return figures


class Odradek:
    """One odradek version: its python and, per perf script, the directory to run it from."""

    def __init__(self, label, python, script_dirs):
        self.label, self.python, self.script_dirs = label, python, script_dirs

    def argv(self, job, n):
        size = str(job["size"])
        if job["kind"] == "produce":
            return [self.python, os.path.join(self.script_dirs["producer_perf.py"], "producer_perf.py"),
                    "--num-records", str(n), "--record-size", size, "--partitions", str(job.get("partitions", 1)),
                    "--processes", str(job["processes"]), "--latency-every", str(LATENCY_EVERY),
                    "--producer-props", *PRODUCER_PROPS]
        if job["kind"] == "consume":
            props = job.get("props", [])
            return [self.python, os.path.join(self.script_dirs["consumer_perf.py"], "consumer_perf.py"),
                    "--messages", str(n), "--record-size", size, "--num-partitions", "1",
                    *(["--consumer-props", *props] if props else [])]
        return [self.python, os.path.join(self.script_dirs["end_to_end_latency.py"], "end_to_end_latency.py"),
                "--num-records", str(n), "--rate", str(LATENCY_RATE), "--record-size", size, "--acks", "1"]

    def run(self, job, n):
        """(figures or None, note)."""
        rc, out, err = run_script(self.argv(job, n))
        if rc != 0:
            if "zero.copy" in err and "props" in job:
                return None, f"{self.label} refuses consumer config zero.copy (no zero-copy mode)"
            return None, f"{self.label} failed (status {rc}): {last_line_of(err or out)}"
        parse = {"produce": parse_producer, "consume": parse_consumer, "latency": parse_latency}[job["kind"]]
        figures = parse(out)
        return figures, None if figures else f"{self.label}: no result line in: {last_line_of(out)}"


class Redis:
    label = "redis"

    def run(self, job, n):
        size = str(job["size"])
        base = [sys.executable, os.path.join(PERF, "redis_streams.py"), "--json"]
        if job["kind"] == "produce":
            argv = base + ["produce", "--num-records", str(n), "--record-size", size,
                           "--processes", str(job["processes"]), "--batch-bytes", str(BATCH_BYTES)]
        elif job["kind"] == "consume":
            argv = base + ["consume", "--messages", str(n), "--record-size", size, "--batch-bytes", str(BATCH_BYTES)]
        else:
            argv = base + ["latency", "--num-records", str(n), "--rate", str(LATENCY_RATE), "--record-size", size]
        rc, out, err = run_script(argv)
        if rc != 0:
            return None, f"redis failed (status {rc}): {last_line_of(err or out)}"
        return json.loads(out.strip().splitlines()[-1]), None


def memcpy_figures(job, n, chunk=64 * MB, repeat=5):
    """One process copying the same total bytes (bytearray slice assignment of a buffer of
    at most 64 MiB, both buffers touched first), the median of `repeat` timed passes, in
    the job's units."""
    size = job["size"]
    total = n * size
    length = min(total, chunk)
    src = bytearray(os.urandom(length))
    dst = bytearray(length)
    dst[:] = src
    times = []
    for _ in range(repeat):
        left = total
        t0 = time.perf_counter()
        while left >= length:
            dst[:] = src
            left -= length
        if left:
            dst[:left] = src[:left]
        times.append(time.perf_counter() - t0)
    seconds = max(statistics.median(times), 1e-9)
    per_record_us = seconds / n * 1e6
    return {"rps": n / seconds, "mbps": total / MB / seconds,
            "p50": per_record_us, "p99": per_record_us, "p999": per_record_us}


# -- the previous version ------------------------------------------------------------------------

def git(*args):
    return subprocess.run(["git", "-C", REPO, *args], check=True, capture_output=True, text=True).stdout.strip()


def build_previous(rev, cache_root):
    """The python of `rev` built in cache_root/<sha> (once: later runs reuse it)."""
    try:
        sha = git("rev-parse", "--verify", f"{rev}^{{commit}}")
    except subprocess.CalledProcessError as e:
        raise SystemExit(f"--base {rev}: not a git revision here ({e.stderr.strip()})") from None
    os.makedirs(cache_root, exist_ok=True)
    dest = os.path.join(cache_root, sha)
    python = os.path.join(dest, ".venv", "bin", "python")
    ready = os.path.join(dest, ".perf-ready")
    with open(os.path.join(cache_root, f"{sha}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)        # two compare runs do not build the same tree at once
        if os.path.exists(ready):
            log(f"previous version {rev} ({sha[:12]}): reusing the build in {dest}")
            return sha, dest, python
        shutil.rmtree(dest, ignore_errors=True)
        log(f"previous version {rev} ({sha[:12]}): building it in {dest} with `make install` (once) ...")
        t0 = time.monotonic()
        archive = subprocess.run(["git", "-C", REPO, "archive", "--format=tar", sha], check=True,
                                 capture_output=True).stdout
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(dest, filter="data")
        with open(os.path.join(dest, "perf-build.log"), "w") as out:
            try:
                done = subprocess.run(["make", "-C", dest, "install"], stdout=out, stderr=subprocess.STDOUT,
                                      timeout=BUILD_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                raise SystemExit(f"building {rev} took over {BUILD_TIMEOUT_S} s; see {dest}/perf-build.log") from None
        if done.returncode != 0 or not os.path.exists(python):
            raise SystemExit(f"`make install` of {rev} failed (status {done.returncode}); see {dest}/perf-build.log")
        open(ready, "w").close()
        log(f"... built in {time.monotonic() - t0:.0f} s")
    return sha, dest, python


def choose_scripts(python, own_perf):
    """Per perf script: this checkout's if a tiny run of it works with that version's
    client, else that version's own. Returns ({script: dir}, [notes])."""
    trial = Odradek("trial", python, dict.fromkeys(SCRIPTS, PERF))
    tiny = {"producer_perf.py": (JOBS[0], 200), "consumer_perf.py": (JOBS[3], 200),
            "end_to_end_latency.py": (JOBS[6], 200)}
    dirs, notes = {}, []
    for script, (job, n) in tiny.items():
        figures, why = trial.run(job, n)
        if figures:
            dirs[script] = PERF
            notes.append(f"previous version run with this checkout's perf/{script}")
        elif os.path.exists(os.path.join(own_perf, script)):
            dirs[script] = own_perf
            notes.append(f"previous version run with its own perf/{script} (this one failed with it: {why})")
        else:
            raise SystemExit(f"the previous version cannot run perf/{script} ({why}) and has none of its own")
        log(notes[-1])
    return dirs, notes


# -- the table ------------------------------------------------------------------------------------

def fmt(value, unit):
    if value is None:
        return "n/a"
    if unit == "rec/s":
        return f"{value:,.0f}"
    if unit == "us":
        return f"{value:.4f}" if value < 1 else f"{value:,.1f}"
    return f"{value:,.1f}"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def fmt_ratio(r):
    if r is None:
        return "n/a"
    return f"{r:.3g}x"


def median_or_none(values):
    got = [v for v in values if v is not None]
    return statistics.median(got) if got else None


def build_rows(results, selected):
    """results[job][variant] = [figures or None per run] -> the rows of the `selected`
    jobs as dicts."""
    rows = []
    for name, job, metric, unit, target, higher, target_text in ROWS:
        if job not in selected:
            continue
        med = {v: median_or_none([f.get(metric) if f else None for f in results[job][v]])
               for v in ("ours", "previous", "redis", "memcpy")}
        ours = med["ours"]
        met = None if ours is None else (ours >= target if higher else ours <= target)
        rows.append({"workload": name, "unit": unit, "higher_is_better": higher, **med,
                     "ours_per_previous": ratio(ours, med["previous"]), "ours_per_redis": ratio(ours, med["redis"]),
                     "ours_per_memcpy": ratio(ours, med["memcpy"]), "target": target, "target_text": target_text,
                     "met": met, "runs": {v: [f.get(metric) if f else None for f in results[job][v]]
                                          for v in ("ours", "previous", "redis", "memcpy")}})
    return rows


def table(rows):
    head = ["workload", "unit", "odradek", "previous", "redis", "memcpy", "ours/prev", "ours/redis",
            "ours/memcpy", "target", "met?"]
    body = [[r["workload"], r["unit"] + (" (up)" if r["higher_is_better"] else " (down)"),
             fmt(r["ours"], r["unit"]), fmt(r["previous"], r["unit"]), fmt(r["redis"], r["unit"]),
             fmt(r["memcpy"], r["unit"]), fmt_ratio(r["ours_per_previous"]), fmt_ratio(r["ours_per_redis"]),
             fmt_ratio(r["ours_per_memcpy"]), r["target_text"],
             "n/a" if r["met"] is None else ("yes" if r["met"] else "no")] for r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body)]
    lines = [" | ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(line, widths)))
             for line in [head] + body]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


# -- main ------------------------------------------------------------------------------------------

def redis_ready():
    """None if redis-server and redis-py are there, else the reason."""
    rc, out, err = run_script([sys.executable, "-c", "import redis, shutil, sys; "
                               "sys.exit(0 if shutil.which('redis-server') else 3)"], timeout=60)
    if rc == 0:
        return None
    return ("redis-server not found (apt-get install -y redis-server)" if rc == 3
            else f"redis-py not importable by {sys.executable} (pip install 'redis[hiredis]')")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", default=DEFAULT_BASE,
                    help=f"the previous odradek: a git revision (default {DEFAULT_BASE}, main before issue 11)")
    ap.add_argument("--runs", type=int, default=3, help="runs of each workload per variant (default 3)")
    ap.add_argument("--quick", action="store_true", help="a tenth of the records: a fast pass, noisier figures")
    ap.add_argument("--only", help="comma-separated jobs to run: " + ", ".join(j["job"] for j in JOBS))
    ap.add_argument("--no-previous", action="store_true", help="leave out the previous version")
    ap.add_argument("--no-redis", action="store_true", help="leave out Redis Streams")
    ap.add_argument("--json", action="store_true", help="print one JSON document instead of the table")
    ap.add_argument("--cache", default=os.environ.get("ODRADEK_PERF_CACHE", "/tmp/odradek-perf-cache"),
                    help="where previous versions are built (default $ODRADEK_PERF_CACHE or /tmp/odradek-perf-cache)")
    args = ap.parse_args()
    if args.runs < 1:
        ap.error("--runs must be at least 1")
    jobs = JOBS
    if args.only:
        wanted = {j.strip() for j in args.only.split(",") if j.strip()}
        unknown = wanted - {j["job"] for j in JOBS}
        if unknown:
            ap.error(f"--only: unknown jobs {sorted(unknown)}")
        jobs = [j for j in JOBS if j["job"] in wanted]
    if not args.no_redis:
        missing = redis_ready()
        if missing:
            print(f"compare.py: {missing}; `make perf-deps` installs redis-server and redis-py, "
                  f"or pass --no-redis", file=sys.stderr)
            sys.exit(2)

    started = time.monotonic()
    load_before = os.getloadavg()
    notes = []
    variants = {"ours": Odradek("this odradek", sys.executable, dict.fromkeys(SCRIPTS, PERF))}
    base_info = None
    if not args.no_previous:
        sha, dest, python = build_previous(args.base, args.cache)
        dirs, script_notes = choose_scripts(python, os.path.join(dest, "perf"))
        notes += script_notes
        variants["previous"] = Odradek(f"previous ({args.base})", python, dirs)
        base_info = {"rev": args.base, "sha": sha, "python": python}
    if not args.no_redis:
        variants["redis"] = Redis()

    results = {j["job"]: {v: [] for v in ("ours", "previous", "redis", "memcpy")} for j in JOBS}
    selected = {j["job"] for j in jobs}
    for i in range(args.runs):
        for job in jobs:
            n = job["records"][1 if args.quick else 0]
            for name, variant in variants.items():
                if name == "redis" and job.get("redis_as") in selected:
                    continue      # Redis has no zero-copy read: the Record row's runs stand for it
                t0 = time.monotonic()
                figures, why = variant.run(job, n)
                results[job["job"]][name].append(figures)
                shown = ", ".join(f"{k} {v:,.1f}" for k, v in (figures or {}).items() if k in ("rps", "mbps", "p50",
                                                                                               "p99", "p999"))
                log(f"[run {i + 1}/{args.runs}] {job['job']:<23} {name:<8} {shown or why} "
                    f"({time.monotonic() - t0:.1f} s)")
                if why and why not in notes:
                    notes.append(why)
                if figures and figures.get("rate", LATENCY_RATE) < PACE_SHORTFALL * LATENCY_RATE:
                    notes.append(f"run {i + 1}: {name}'s paced producer reached only {figures['rate']:,.0f} of "
                                 f"{LATENCY_RATE:,} records/s (the machine was overloaded; its latency is suspect)")
            results[job["job"]]["memcpy"].append(memcpy_figures(job, n))
    for job in jobs:
        if job.get("redis_as") in selected:
            results[job["job"]]["redis"] = results[job["redis_as"]]["redis"]
            notes.append(f"redis for {job['job']}: the {job['redis_as']} runs (Redis has no zero-copy read)")
    rows = build_rows(results, selected)
    seconds = time.monotonic() - started
    load = f"load average {' '.join(f'{x:.2f}' for x in load_before)} at the start, " \
           f"{' '.join(f'{x:.2f}' for x in os.getloadavg())} at the end on {os.cpu_count()} CPUs"
    config = {"runs": args.runs, "quick": args.quick, "load": load, "base": base_info, "producer_props": PRODUCER_PROPS,
              "redis_batch_bytes": BATCH_BYTES, "latency_rate": LATENCY_RATE,
              "records": {j["job"]: j["records"][1 if args.quick else 0] for j in jobs}}
    if args.json:
        print(json.dumps({"config": config, "rows": rows, "notes": notes, "seconds": seconds}, indent=1))
        return
    print(f"odradek ({sys.executable}) vs previous "
          f"({'left out' if base_info is None else base_info['rev'] + ' = ' + base_info['sha'][:12]}), "
          f"Redis Streams + redis-py and memcpy: medians of {args.runs} interleaved run(s)"
          f"{', quick sizes' if args.quick else ''}; one partition, acks=1, producers {' '.join(PRODUCER_PROPS)}")
    print(table(rows))
    print("(up): higher is better, ratios above 1 favour odradek; (down): lower is better, ratios below 1 "
          "favour odradek. MB = 2**20 bytes, GB = 1024 MB. memcpy: the same total bytes copied in one process "
          "(latency rows: the time to copy one record).")
    print("runs, in order (odradek | previous | redis): the spread is the noise floor")
    for r in rows:
        runs = " | ".join(" ".join(fmt(v, r["unit"]) for v in r["runs"][v]) or "-"
                          for v in ("ours", "previous", "redis"))
        print(f"  {r['workload']:<26} {runs}")
    for note in notes:
        print(f"note: {note}")
    print(f"took {seconds:.0f} s; {load}")


if __name__ == "__main__":
    run(main)
