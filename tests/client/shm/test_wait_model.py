"""Every interleaving of the futex wait protocols, explored exhaustively.

A small explicit-state model checker: each party is a list of atomic steps over shared
words; the explorer runs every interleaving of them (breadth-first, each state once)
and looks for a *lost wake-up*: the sleeper asleep in the kernel, not woken, every
polite party finished, and work of a polite party still pending. A hostile party may
write any value to any word it can map, at any time, and may stop at any time (so a
state is lost whatever it does next).

Memory is sequentially consistent: every shared access in shm.c is a C11 atomic
(acquire/release or seq_cst, with seq_cst where a store is followed by a load of
another word), and the kernel orders FUTEX_WAIT's compare-and-queue against FUTEX_WAKE
with the hash-bucket lock and full barriers (kernel/futex/waitwake.c, "Basic futex
operation and ordering guarantees"). futex_waitv compares and queues its words one by
one, in order: a wake on a word queued earlier wakes the sleeper, a wake on a word not
yet queued is gone, and a word found changed unqueues all and returns.

The protocols are those of client/shm/LAYOUT.md, "Waiting"; the old flag protocol is
kept here only to show the checker finds its lost wake-up (issue 8, defect 1).
"""
from collections import deque

MOD = 4   # words count modulo MOD (finite), more than any word's increments in a model:
          # no wrap-around ABA, which needs 2^32 rings within one sleep on a real u32
HOSTILE_WRITES = 2


class Model:
    """Parties (name -> list of steps) over shared words. A step is a tuple:
        ("load", local, word)              local = word
        ("add", word)                      word += 1 (an atomic increment)
        ("store", word, value)
        ("xchg", local, word, value)       local = word; word = value (atomic)
        ("if_ne", x, y, target)            jump when x != y (x, y: "word", "$local" or int)
        ("goto", target)
        ("wake", word)                     FUTEX_WAKE: wakes the sleeper if queued on word
        ("queue", word, "$seen", target)   one futex_wait(v) word: if word != seen,
                                           unqueue all and jump to target; else queue
        ("sleep", target)                  block until woken; then unqueue all, jump
        ("any", word)                      hostile: write any value to word
        ("end",)
    `pending(mem, locals_of_sleeper)` says whether a polite party's work is not taken."""

    def __init__(self, words, parties, sleeper, polite, pending, mod=MOD):
        self.mod = mod
        self.words = tuple(sorted(words))
        self.parties = parties
        self.names = tuple(sorted(parties))
        self.sleeper, self.polite, self.pending = sleeper, set(polite), pending

    def initial(self):
        mem = tuple(0 for _ in self.words)
        pcs = tuple(0 for _ in self.names)
        locs = tuple(() for _ in self.names)
        return (mem, pcs, locs, frozenset(), False)

    def successors(self, state):
        for i, name in enumerate(self.names):
            yield from self._step(state, i, name)

    def _step(self, state, i, name):
        mem, pcs, locs, queued, woken = state
        prog = self.parties[name]
        pc = pcs[i]
        op = prog[pc]
        m = dict(zip(self.words, mem))
        loc = dict(locs[i])
        kind = op[0]

        def val(x):
            if isinstance(x, int):
                return x
            return loc.get(x[1:], 0) if x.startswith("$") else m[x]

        def out(next_pc, q=queued, w=woken):
            p = list(pcs)
            p[i] = next_pc
            ls = list(locs)
            ls[i] = tuple(sorted(loc.items()))
            return (tuple(m[k] for k in self.words), tuple(p), tuple(ls), frozenset(q), w)

        if kind == "end":
            return
        if kind == "load":
            loc[op[1]] = m[op[2]]
            yield out(pc + 1)
        elif kind == "add":
            m[op[1]] = (m[op[1]] + 1) % self.mod
            yield out(pc + 1)
        elif kind == "store":
            m[op[1]] = op[2]
            yield out(pc + 1)
        elif kind == "xchg":
            loc[op[1]] = m[op[2]]
            m[op[2]] = op[3]
            yield out(pc + 1)
        elif kind == "if_ne":
            yield out(op[3] if val(op[1]) != val(op[2]) else pc + 1)
        elif kind == "goto":
            yield out(op[1])
        elif kind == "wake":
            yield out(pc + 1, w=woken or op[1] in queued)
        elif kind == "queue":
            if m[op[1]] != val(op[2]):
                yield out(op[3], q=(), w=False)
            else:
                yield out(pc + 1, q=queued | {op[1]})
        elif kind == "sleep":
            if woken:
                yield out(op[1], q=(), w=False)
        elif kind == "any":
            for v in range(self.mod):
                m[op[1]] = v
                yield out(pc + 1)
        else:  # pragma: no cover - a typo in a model
            raise AssertionError(op)

    def is_lost(self, state):
        mem, pcs, locs, queued, woken = state
        s = self.names.index(self.sleeper)
        if self.parties[self.sleeper][pcs[s]][0] != "sleep" or woken:
            return False
        for i, name in enumerate(self.names):
            if name in self.polite and self.parties[name][pcs[i]][0] != "end":
                return False
        return self.pending(dict(zip(self.words, mem)), dict(locs[s]))

    def explore(self, limit=2_000_000):
        """(states explored, a lost state's trace or None)."""
        start = self.initial()
        parent = {start: None}
        todo = deque([start])
        while todo:
            state = todo.popleft()
            if self.is_lost(state):
                return len(parent), self._trace(parent, state)
            for nxt in self.successors(state):
                if nxt not in parent:
                    parent[nxt] = state
                    todo.append(nxt)
            assert len(parent) < limit, "state space larger than expected"
        return len(parent), None

    def _trace(self, parent, state):
        out = []
        while state is not None:
            out.append(state)
            state = parent[state]
        return out[::-1]


def hostile(word, writes=HOSTILE_WRITES):
    """Writes any value to `word`, up to `writes` times, whenever it likes."""
    return [("any", word)] * writes + [("end",)]


def futex_wait(word, seen="$seen", again=0):
    """A one-word futex_wait: compare-and-queue, then sleep until woken."""
    return [("queue", word, seen, again), ("sleep", again)]


# ---- The old protocol: the waker clears the waiter flag --------------------------------

def old_sleeper():
    # seen = counter; take the work; doorbell_wait: flag = 1; re-check; futex_wait
    return [("load", "seen", "counter"), ("load", "head", "work"),
            ("store", "flag", 1), ("if_ne", "counter", "$seen", 0),
            *futex_wait("counter")]


def old_ringer(rounds=1):
    # publish the work; counter += 1; if flag and xchg(flag, 0): wake
    out = []
    for _ in range(rounds):
        nxt = len(out) + 6
        out += [("add", "work"), ("add", "counter"),
                ("if_ne", "flag", 1, nxt), ("xchg", "f", "flag", 0), ("if_ne", "$f", 1, nxt),
                ("wake", "counter")]
    return out + [("end",)]


def work_pending(mem, loc):
    return mem["work"] != loc.get("head", 0)


def test_the_old_flag_protocol_loses_a_wake_up_with_two_polite_ringers():
    model = Model({"counter", "flag", "work"},
                  {"sleeper": old_sleeper(), "r1": old_ringer(), "r2": old_ringer()},
                  "sleeper", {"r1", "r2"}, work_pending)
    _, trace = model.explore()
    assert trace is not None, "the checker must find the issue's lost wake-up"


def test_the_old_flag_protocol_loses_a_wake_up_even_between_two_parties():
    """One writer publishing twice: its first wake clears the flag the sleeper set for
    the sleep after it (the ring's data and space waits used this)."""
    model = Model({"counter", "flag", "work"}, {"sleeper": old_sleeper(), "w": old_ringer(2)},
                  "sleeper", {"w"}, work_pending)
    _, trace = model.explore()
    assert trace is not None


def test_the_old_flag_protocol_loses_a_wake_up_to_a_peer_that_clears_the_flag():
    """The partition state's wake page: every consumer may write its flag."""
    model = Model({"counter", "flag", "work"},
                  {"sleeper": old_sleeper(), "writer": old_ringer(), "hostile": hostile("flag")},
                  "sleeper", {"writer"}, work_pending)
    _, trace = model.explore()
    assert trace is not None


# ---- Doorbell and partition state: the counter is the futex word, every waker wakes ---

def counter_sleeper():
    return [("load", "seen", "counter"), ("load", "head", "work"), *futex_wait("counter")]


def always_waker(rounds=1):
    one = [("add", "work"), ("add", "counter"), ("wake", "counter")]
    return one * rounds + [("end",)]


def test_counter_and_always_wake_loses_nothing_with_trusted_wakers():
    """The doorbell (rung by trusted parties) and the partition state (seq, written by
    the worker alone): several wakers, each ringing twice."""
    model = Model({"counter", "work"},
                  {"sleeper": counter_sleeper(), "w1": always_waker(2), "w2": always_waker(2)},
                  "sleeper", {"w1", "w2"}, work_pending, mod=8)
    states, trace = model.explore()
    assert trace is None and states > 100


def test_counter_and_always_wake_loses_a_wake_up_to_a_peer_that_writes_the_counter():
    """Why the worker does not sleep on the shared doorbell alone: a producer that can
    write the counter puts back the value the sleeper saw (ABA) while a polite ring's
    wake goes by before the sleeper is queued."""
    model = Model({"counter", "work"},
                  {"sleeper": counter_sleeper(), "polite": always_waker(), "hostile": hostile("counter")},
                  "sleeper", {"polite"}, work_pending)
    _, trace = model.explore()
    assert trace is not None


# ---- The worker: futex_waitv on its own bell, the shared doorbell and every ring tail --

def worker_sleeper():
    """seen = (bell, doorbell, tail); take link requests and ring entries; futex_waitv."""
    return [("load", "s_bell", "bell"), ("load", "s_door", "door"), ("load", "s_tail", "tail"),
            ("load", "link_head", "link"), ("load", "head", "tail"),
            ("queue", "bell", "$s_bell", 0), ("queue", "door", "$s_door", 0),
            ("queue", "tail", "$s_tail", 0), ("sleep", 0)]


def polite_producer(rounds=2):
    """Commit (publish tail), then ring the shared doorbell: increment and wake."""
    one = [("add", "tail"), ("add", "door"), ("wake", "door")]
    return one * rounds + [("end",)]


def link_watcher():
    """The worker's own thread: a broker request arrived; ring the worker's own bell."""
    return [("add", "link"), ("add", "bell"), ("wake", "bell"), ("end",)]


def worker_pending(mem, loc):
    return mem["tail"] != loc.get("head", 0) or mem["link"] != loc.get("link_head", 0)


def test_the_worker_loses_no_wake_up_whatever_a_hostile_producer_writes():
    model = Model({"bell", "door", "tail", "link"},
                  {"worker": worker_sleeper(), "polite": polite_producer(), "link": link_watcher(),
                   "hostile": hostile("door", 3)},
                  "worker", {"polite", "link"}, worker_pending)
    states, trace = model.explore()
    assert trace is None and states > 1000


def test_without_the_tails_the_worker_loses_a_polite_producers_wake_up():
    """The same worker sleeping on its bell and the doorbell only: the checker finds the
    loss, so the tails in the wait set are what makes it safe."""
    sleeper = [op for op in worker_sleeper() if op[:2] != ("queue", "tail")]
    model = Model({"bell", "door", "tail", "link"},
                  {"worker": sleeper, "polite": polite_producer(1), "hostile": hostile("door")},
                  "worker", {"polite"}, worker_pending)
    _, trace = model.explore()
    assert trace is not None


# ---- A ring: two parties, a waiter flag only the sleeper writes ------------------------

def flag_sleeper():
    # seen = word; take the work; flag = 1; re-check; futex_wait; flag = 0 after
    return [("load", "seen", "counter"), ("load", "head", "work"),
            ("store", "flag", 1), ("if_ne", "counter", "$seen", 6),
            ("queue", "counter", "$seen", 6), ("sleep", 6),
            ("store", "flag", 0), ("goto", 0)]


def flag_waker(rounds=3):
    # publish; if flag: wake (never clears it)
    out = []
    for _ in range(rounds):
        base = len(out)
        out += [("add", "work"), ("add", "counter"), ("if_ne", "flag", 1, base + 4),
                ("wake", "counter")]
    return out + [("end",)]


def test_a_waiter_flag_only_the_sleeper_writes_loses_nothing():
    model = Model({"counter", "flag", "work"},
                  {"sleeper": flag_sleeper(), "waker": flag_waker()},
                  "sleeper", {"waker"}, work_pending)
    states, trace = model.explore()
    assert trace is None and states > 50
