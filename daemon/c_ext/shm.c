/*
 * shm.c — atomics, futexes and the shared-memory structures of odradek's data plane
 * (contract: the "Shared memory" section of odradek.h; byte tables, ordering rules and
 * the crash story: client/shm/LAYOUT.md).
 *
 * Why the rules below hold (the short version; LAYOUT.md has the long one):
 *  - Nothing here takes a lock, so a process killed at any instant leaves no lock held.
 *    Every structure has one writer per field; a writer publishes with one release
 *    store (ring tail/head, descriptor stamp, seqlock seq), so a reader sees either the
 *    state before or the state after, and a writer killed before that store leaves only
 *    unpublished scratch behind.
 *  - No waker ever clears state a sleeper relies on. Two schemes (LAYOUT.md, "Waiting",
 *    has the argument; tests/client/shm/test_wait_model.py checks every interleaving):
 *      counter: the futex word is the counter itself; the waker updates it, then
 *               always FUTEX_WAKEs (doorbell, partition state seq: many parties);
 *      flag:    waiter: flag = 1; fence(seq_cst); if (word != seen) {flag = 0; return}
 *                       futex_wait(word, seen); flag = 0
 *               waker:  word = new; fence(seq_cst); if (flag) futex_wake(word)
 *               The flag is written by its one sleeper only (ring: two parties). The
 *               fences forbid "waiter reads the old word AND waker reads flag 0".
 *  - Values a peer writes are validated before they become indexes (see odradek.h).
 *
 * Plain C11 atomics through casts of the mapped bytes to _Atomic pointers: the fields
 * are naturally aligned and lock-free at these sizes on every supported target, so the
 * _Atomic object has the same representation as the plain one.
 */
#define _GNU_SOURCE
#include "odradek.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define RLX memory_order_relaxed
#define ACQ memory_order_acquire
#define REL memory_order_release
#define SEQ memory_order_seq_cst

_Static_assert(ATOMIC_LLONG_LOCK_FREE == 2, "64-bit atomics must be lock-free");
_Static_assert(ATOMIC_INT_LOCK_FREE == 2, "32-bit atomics must be lock-free");

static inline _Atomic uint64_t *a64(const uint8_t *base, size_t off)
{
    return (_Atomic uint64_t *)(uintptr_t)(base + off);
}

static inline _Atomic uint32_t *a32(const uint8_t *base, size_t off)
{
    return (_Atomic uint32_t *)(uintptr_t)(base + off);
}

static inline _Atomic int64_t *ai64(const uint8_t *base, size_t off)
{
    return (_Atomic int64_t *)(uintptr_t)(base + off);
}

/* The futex word inside a u64 counter: its low 32 bits, which change on every update. */
static inline uint32_t *low_half(const uint8_t *base, size_t off)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    off += 4;
#endif
    return (uint32_t *)(uintptr_t)(base + off);
}

static inline uint64_t align8(uint64_t n)
{
    return (n + 7) & ~(uint64_t)7;
}

/* ---- Atomics ------------------------------------------------------------------------ */

uint64_t odk_atomic_load_u64(const uint8_t *base, size_t off)
{
    return atomic_load_explicit(a64(base, off), ACQ);
}

void odk_atomic_store_u64(uint8_t *base, size_t off, uint64_t value)
{
    atomic_store_explicit(a64(base, off), value, REL);
}

uint64_t odk_atomic_fetch_add_u64(uint8_t *base, size_t off, uint64_t delta)
{
    return atomic_fetch_add_explicit(a64(base, off), delta, SEQ);
}

uint64_t odk_atomic_cas_u64(uint8_t *base, size_t off, uint64_t expected, uint64_t desired)
{
    atomic_compare_exchange_strong_explicit(a64(base, off), &expected, desired, SEQ, SEQ);
    return expected;   /* on failure C11 stores the value found here; on success it is it */
}

uint32_t odk_atomic_load_u32(const uint8_t *base, size_t off)
{
    return atomic_load_explicit(a32(base, off), ACQ);
}

void odk_atomic_store_u32(uint8_t *base, size_t off, uint32_t value)
{
    atomic_store_explicit(a32(base, off), value, REL);
}

uint32_t odk_atomic_fetch_add_u32(uint8_t *base, size_t off, uint32_t delta)
{
    return atomic_fetch_add_explicit(a32(base, off), delta, SEQ);
}

uint32_t odk_atomic_cas_u32(uint8_t *base, size_t off, uint32_t expected, uint32_t desired)
{
    atomic_compare_exchange_strong_explicit(a32(base, off), &expected, desired, SEQ, SEQ);
    return expected;
}

/* ---- Futex -------------------------------------------------------------------------- */

int odk_futex_wait(uint32_t *addr, uint32_t expected, int64_t timeout_ns)
{
    struct timespec ts, *tp = NULL;
    if (timeout_ns >= 0) {
        ts.tv_sec = (time_t)(timeout_ns / 1000000000);
        ts.tv_nsec = (long)(timeout_ns % 1000000000);
        tp = &ts;
    }
    /* FUTEX_WAIT, not FUTEX_WAIT_PRIVATE: the word is in a MAP_SHARED mapping that
     * other processes wait on and wake through their own mappings. */
    long rc = syscall(SYS_futex, addr, FUTEX_WAIT, expected, tp, NULL, 0);
    if (rc == 0)
        return 0;
    if (errno == ETIMEDOUT)
        return 1;
    if (errno == EAGAIN)
        return 2;
    return -errno;
}

int odk_futex_wake(uint32_t *addr, int n)
{
    long rc = syscall(SYS_futex, addr, FUTEX_WAKE, n, NULL, NULL, 0);
    return rc < 0 ? -errno : (int)rc;
}

#ifndef SYS_futex_waitv
#define SYS_futex_waitv 449   /* the same number on every architecture (generic table) */
#endif
#ifndef FUTEX2_SIZE_U32
#define FUTEX2_SIZE_U32 0x02
#endif

/* struct futex_waitv of <linux/futex.h> (5.16+), spelled out for older headers. */
struct odk_futex_waitv {
    uint64_t val;
    uint64_t uaddr;
    uint32_t flags;
    uint32_t reserved;
};

static int any_differs(uint32_t *const *words, const uint32_t *seen, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        if (atomic_load_explicit((_Atomic uint32_t *)words[i], ACQ) != seen[i])
            return 1;
    return 0;
}

int odk_futex_wait_any(uint32_t *const *words, const uint32_t *seen, uint32_t n,
                       int64_t timeout_ns)
{
    if (n == 0 || n > ODK_WAIT_MANY_MAX)
        return -EINVAL;
    if (any_differs(words, seen, n))
        return 1;
    if (timeout_ns == 0)
        return 0;
    struct odk_futex_waitv w[ODK_WAIT_MANY_MAX];
    for (uint32_t i = 0; i < n; i++) {
        w[i].val = seen[i];
        w[i].uaddr = (uint64_t)(uintptr_t)words[i];
        w[i].flags = FUTEX2_SIZE_U32;   /* shared: no FUTEX2_PRIVATE */
        w[i].reserved = 0;
    }
    struct timespec ts, *tp = NULL;
    if (timeout_ns > 0) {   /* futex_waitv takes an absolute time */
        clock_gettime(CLOCK_MONOTONIC, &ts);
        int64_t ns = ts.tv_nsec + timeout_ns % 1000000000;
        ts.tv_sec += (time_t)(timeout_ns / 1000000000 + ns / 1000000000);
        ts.tv_nsec = (long)(ns % 1000000000);
        tp = &ts;
    }
    long rc = syscall(SYS_futex_waitv, w, n, 0, tp, CLOCK_MONOTONIC);
    if (rc < 0 && errno == ENOSYS) {
        int64_t cap = 1000000;
        odk_futex_wait(words[0], seen[0], timeout_ns < 0 || timeout_ns > cap ? cap : timeout_ns);
    }
    return any_differs(words, seen, n);
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static inline int64_t monotonic_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);   /* vDSO: no system call */
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Reads only: the words may be in read-only mappings, and nothing here writes shared
 * memory, so a spinner follows each word's wait protocol exactly as a sleeper that has
 * not yet called futex_waitv (LAYOUT.md, "Waiting"). */
int odk_futex_spin_wait_any(uint32_t *const *words, const uint32_t *seen, uint32_t n,
                            int64_t spin_ns, int64_t timeout_ns, int64_t *spun_ns)
{
    if (spun_ns)
        *spun_ns = 0;
    if (n == 0 || n > ODK_WAIT_MANY_MAX)
        return -EINVAL;
    if (any_differs(words, seen, n))
        return 1;
    if (spin_ns > ODK_SPIN_MAX_NS)
        spin_ns = ODK_SPIN_MAX_NS;
    if (timeout_ns >= 0 && spin_ns > timeout_ns)
        spin_ns = timeout_ns;
    if (spin_ns > 0) {
        int64_t start = monotonic_ns(), now = start, before = start;
        int found = 0, preempted = 0;
        while (!found && !preempted && now - start < spin_ns) {
            for (int i = 0; i < 16 && !found; i++) {   /* ~16 pauses between clock reads */
                cpu_relax();
                found = any_differs(words, seen, n);
            }
            before = now;
            now = monotonic_ns();
            preempted = now - before > ODK_SPIN_PREEMPTED_NS;
        }
        if (spun_ns)
            *spun_ns = preempted ? -(now - start) : now - start;
        if (found)
            return 1;
        if (timeout_ns >= 0)
            timeout_ns = timeout_ns > now - start ? timeout_ns - (now - start) : 0;
    }
    return odk_futex_wait_any(words, seen, n, timeout_ns);
}

/* A sleeper's snapshot of its words in one call (waiting.py, WaitSet.retake). */
void odk_futex_words_load(uint32_t *const *words, uint32_t *seen, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        seen[i] = atomic_load_explicit((_Atomic uint32_t *)words[i], ACQ);
}

/* The counter scheme's waker: after updating the word, wake whoever sleeps on it. With
 * nobody asleep this is one system call that finds an empty hash bucket (perf/
 * futex_wake.py measures it); no flag is read, so nobody can talk us out of it. */
static inline void wake_all(uint32_t *word)
{
    odk_futex_wake(word, INT_MAX);
}

/* The flag scheme's waker (call right after publishing the word): the flag is the
 * sleeper's alone; we only read it. */
static void wake_if_flagged(_Atomic uint32_t *flag, uint32_t *word)
{
    atomic_thread_fence(SEQ);
    if (atomic_load_explicit(flag, RLX))
        odk_futex_wake(word, INT_MAX);
}

/* The flag scheme's sleeper: announce, re-check, sleep while *word == seen, withdraw.
 * Returns nothing: callers re-read their condition afterwards, whatever woke them. A
 * zero timeout is a poll: no flag, no system call. */
static void sleep_flagged(_Atomic uint32_t *flag, uint32_t *word, uint32_t seen,
                          int64_t timeout_ns)
{
    if (timeout_ns == 0)
        return;
    atomic_store_explicit(flag, 1, RLX);
    atomic_thread_fence(SEQ);
    if (atomic_load_explicit((_Atomic uint32_t *)word, RLX) == seen)
        odk_futex_wait(word, seen, timeout_ns);
    atomic_store_explicit(flag, 0, RLX);
}

/* ---- Doorbell ----------------------------------------------------------------------- */

int odk_doorbell_format(uint8_t *base, size_t size)
{
    if (size < ODK_DOORBELL_SIZE)
        return ODK_SHM_BAD_LAYOUT;
    memset(base, 0, ODK_DOORBELL_SIZE);
    atomic_store_explicit(a32(base, ODK_DOORBELL_OFF_VERSION), ODK_DOORBELL_VERSION, RLX);
    atomic_store_explicit(a32(base, ODK_DOORBELL_OFF_MAGIC), ODK_DOORBELL_MAGIC, REL);
    return ODK_SHM_OK;
}

int odk_doorbell_check(const uint8_t *base, size_t size)
{
    if (size < ODK_DOORBELL_SIZE
        || atomic_load_explicit(a32(base, ODK_DOORBELL_OFF_MAGIC), ACQ) != ODK_DOORBELL_MAGIC
        || atomic_load_explicit(a32(base, ODK_DOORBELL_OFF_VERSION), RLX) != ODK_DOORBELL_VERSION)
        return ODK_SHM_BAD_LAYOUT;
    return ODK_SHM_OK;
}

uint32_t odk_doorbell_value(const uint8_t *base)
{
    return atomic_load_explicit(a32(base, ODK_DOORBELL_OFF_COUNTER), ACQ);
}

void odk_doorbell_ring(uint8_t *base)
{
    /* seq_cst RMW: orders the ringer's earlier stores (a ring's tail) before the count;
     * the system call orders the count before the kernel looks for sleepers. */
    atomic_fetch_add_explicit(a32(base, ODK_DOORBELL_OFF_COUNTER), 1, SEQ);
    wake_all((uint32_t *)(uintptr_t)(base + ODK_DOORBELL_OFF_COUNTER));
}

int odk_doorbell_wait(uint8_t *base, uint32_t seen, int64_t timeout_ns)
{
    _Atomic uint32_t *counter = a32(base, ODK_DOORBELL_OFF_COUNTER);
    if (atomic_load_explicit(counter, ACQ) != seen)
        return 1;
    if (timeout_ns != 0)
        odk_futex_wait((uint32_t *)(uintptr_t)counter, seen, timeout_ns);
    return atomic_load_explicit(counter, ACQ) != seen;
}

/* ---- SPSC ring ---------------------------------------------------------------------- */

static inline uint64_t ring_max_payload(const odk_ring *r)
{
    return r->capacity / 2 - ODK_RING_ENTRY_HEADER;
}

/* Bytes an entry of `need` bytes takes starting at position `tail`: `need`, plus the
 * dead space up to the end of the data area when it does not fit before it. */
static inline uint64_t ring_span(const odk_ring *r, uint64_t tail, uint64_t need)
{
    uint64_t room = r->capacity - (tail & (r->capacity - 1));
    return need <= room ? need : room + need;
}

int odk_ring_format(uint8_t *base, size_t size, uint64_t capacity)
{
    if (capacity < ODK_RING_MIN_CAPACITY || capacity > ODK_RING_MAX_CAPACITY
        || (capacity & (capacity - 1)) != 0 || size < ODK_RING_HEADER_SIZE + capacity)
        return ODK_SHM_BAD_LAYOUT;
    memset(base, 0, ODK_RING_HEADER_SIZE);
    atomic_store_explicit(a32(base, ODK_RING_OFF_VERSION), ODK_RING_VERSION, RLX);
    atomic_store_explicit(a64(base, ODK_RING_OFF_CAPACITY), capacity, RLX);
    atomic_store_explicit(a64(base, ODK_RING_OFF_DATA_OFFSET), ODK_RING_HEADER_SIZE, RLX);
    atomic_store_explicit(a32(base, ODK_RING_OFF_MAGIC), ODK_RING_MAGIC, REL);
    return ODK_SHM_OK;
}

int odk_ring_init(odk_ring *r, uint8_t *base, size_t size)
{
    memset(r, 0, sizeof *r);
    if (size < ODK_RING_HEADER_SIZE
        || atomic_load_explicit(a32(base, ODK_RING_OFF_MAGIC), ACQ) != ODK_RING_MAGIC
        || atomic_load_explicit(a32(base, ODK_RING_OFF_VERSION), RLX) != ODK_RING_VERSION
        || atomic_load_explicit(a64(base, ODK_RING_OFF_DATA_OFFSET), RLX) != ODK_RING_HEADER_SIZE)
        return ODK_SHM_BAD_LAYOUT;
    uint64_t cap = atomic_load_explicit(a64(base, ODK_RING_OFF_CAPACITY), RLX);
    if (cap < ODK_RING_MIN_CAPACITY || cap > ODK_RING_MAX_CAPACITY || (cap & (cap - 1)) != 0
        || size - ODK_RING_HEADER_SIZE < cap)
        return ODK_SHM_BAD_LAYOUT;
    uint64_t head = atomic_load_explicit(a64(base, ODK_RING_OFF_HEAD), ACQ);
    uint64_t tail = atomic_load_explicit(a64(base, ODK_RING_OFF_TAIL), ACQ);
    if (tail - head > cap || (head & 7) || (tail & 7))
        return ODK_SHM_CORRUPT;
    r->base = base;
    r->capacity = cap;
    r->tail = tail;
    r->head_seen = head;
    r->head = head;
    r->tail_seen = tail;
    return ODK_SHM_OK;
}

int64_t odk_ring_reserve(odk_ring *r, uint32_t len, uint32_t tag)
{
    if (r->pending)
        return -ODK_SHM_MISUSE;
    if (len > ring_max_payload(r))
        return -ODK_SHM_TOO_BIG;
    uint64_t need = ODK_RING_ENTRY_HEADER + align8(len);
    uint64_t tail = r->tail;
    uint64_t span = ring_span(r, tail, need);
    /* head_seen is at most stale (too small): reload it only when space looks short.
     * A head ahead of tail (a broken reader) makes the difference huge: "full". */
    if (tail + span - r->head_seen > r->capacity) {
        r->head_seen = atomic_load_explicit(a64(r->base, ODK_RING_OFF_HEAD), ACQ);
        if (tail + span - r->head_seen > r->capacity)
            return -ODK_SHM_FULL;
    }
    uint8_t *data = r->base + ODK_RING_HEADER_SIZE;
    uint64_t mask = r->capacity - 1;
    uint64_t start = tail + (span - need);
    if (start != tail) {   /* does not fit before the end: wrap marker, then data[0] */
        atomic_store_explicit(a32(data, tail & mask), ODK_RING_WRAP, RLX);
        atomic_store_explicit(a32(data, (tail & mask) + 4), 0, RLX);
    }
    atomic_store_explicit(a32(data, start & mask), len, RLX);
    atomic_store_explicit(a32(data, (start & mask) + 4), tag, RLX);
    r->pending_start = start;
    r->pending_end = start + need;
    r->pending_len = len;
    r->pending = 1;
    return (int64_t)(ODK_RING_HEADER_SIZE + (start & mask) + ODK_RING_ENTRY_HEADER);
}

static int commit(odk_ring *r, uint32_t len, int ring_doorbell);

int odk_ring_commit(odk_ring *r, uint32_t len)
{
    return commit(r, len, 1);
}

static int commit(odk_ring *r, uint32_t len, int ring_doorbell)
{
    if (!r->pending)
        return ODK_SHM_MISUSE;
    if (len != r->pending_len) {
        if (len > r->pending_len)
            return ODK_SHM_TOO_BIG;
        uint8_t *data = r->base + ODK_RING_HEADER_SIZE;
        atomic_store_explicit(a32(data, r->pending_start & (r->capacity - 1)), len, RLX);
        r->pending_end = r->pending_start + ODK_RING_ENTRY_HEADER + align8(len);
    }
    r->pending = 0;
    r->tail = r->pending_end;
    /* The one publishing store: the entry, its header and any wrap marker become
     * visible to a reader that loads this tail with acquire. */
    atomic_store_explicit(a64(r->base, ODK_RING_OFF_TAIL), r->tail, REL);
    wake_if_flagged(a32(r->base, ODK_RING_OFF_DATA_WAITER), low_half(r->base, ODK_RING_OFF_TAIL));
    if (ring_doorbell && r->doorbell)
        odk_doorbell_ring(r->doorbell);
    return ODK_SHM_OK;
}

int odk_ring_cancel(odk_ring *r)
{
    if (!r->pending)
        return ODK_SHM_MISUSE;
    r->pending = 0;   /* nothing was published: the scratch bytes are simply reused */
    return ODK_SHM_OK;
}

static int write_entry(odk_ring *r, const uint8_t *src, uint32_t len, uint32_t tag, int ring_doorbell)
{
    int64_t off = odk_ring_reserve(r, len, tag);
    if (off < 0)
        return (int)-off;
    memcpy(r->base + off, src, len);
    return commit(r, len, ring_doorbell);
}

int odk_ring_write(odk_ring *r, const uint8_t *src, uint32_t len, uint32_t tag)
{
    return write_entry(r, src, len, tag, 1);
}

int odk_ring_write_unrung(odk_ring *r, const uint8_t *src, uint32_t len, uint32_t tag)
{
    return write_entry(r, src, len, tag, 0);
}

void odk_ring_ring_doorbell(odk_ring *r)
{
    if (r->doorbell)
        odk_doorbell_ring(r->doorbell);
}

int odk_ring_wait_writable(odk_ring *r, uint32_t len, int64_t timeout_ns)
{
    if (len > ring_max_payload(r))
        return -ODK_SHM_TOO_BIG;
    uint64_t span = ring_span(r, r->tail, ODK_RING_ENTRY_HEADER + align8(len));
    _Atomic uint64_t *head = a64(r->base, ODK_RING_OFF_HEAD);
    uint64_t h = atomic_load_explicit(head, ACQ);
    if (r->tail + span - h <= r->capacity)
        goto ready;
    sleep_flagged(a32(r->base, ODK_RING_OFF_SPACE_WAITER),
                  low_half(r->base, ODK_RING_OFF_HEAD), (uint32_t)h, timeout_ns);
    h = atomic_load_explicit(head, ACQ);
    if (r->tail + span - h <= r->capacity)
        goto ready;
    return 0;
ready:
    r->head_seen = h;
    return 1;
}

int64_t odk_ring_peek(odk_ring *r)
{
    if (r->entry_pending)
        return r->entry_offset;
    uint64_t h = r->head, t = r->tail_seen;
    if (t == h) {
        t = atomic_load_explicit(a64(r->base, ODK_RING_OFF_TAIL), ACQ);
        r->tail_seen = t;
        if (t == h)
            return -ODK_SHM_EMPTY;
    }
    /* Everything below comes from the writer: check it before trusting it, and read
     * each header word once (an atomic load), so a writer changing it meanwhile cannot
     * make the checked value differ from the used one. */
    uint64_t avail = t - h, cap = r->capacity;
    if (avail > cap || (t & 7))
        return -ODK_SHM_CORRUPT;
    const uint8_t *data = r->base + ODK_RING_HEADER_SIZE;
    uint64_t idx = h & (cap - 1), skip = 0;
    uint32_t len = atomic_load_explicit(a32(data, idx), RLX);
    if (len == ODK_RING_WRAP) {
        skip = cap - idx;
        if (idx == 0 || avail < skip + ODK_RING_ENTRY_HEADER)
            return -ODK_SHM_CORRUPT;
        idx = 0;
        len = atomic_load_explicit(a32(data, 0), RLX);
    }
    if (len > ring_max_payload(r))
        return -ODK_SHM_CORRUPT;
    uint64_t total = ODK_RING_ENTRY_HEADER + align8(len);
    if (skip + total > avail || idx + total > cap)
        return -ODK_SHM_CORRUPT;
    r->entry_len = len;
    r->entry_tag = atomic_load_explicit(a32(data, idx + 4), RLX);
    r->entry_end = h + skip + total;
    r->entry_offset = (int64_t)(ODK_RING_HEADER_SIZE + idx + ODK_RING_ENTRY_HEADER);
    r->entry_pending = 1;
    return r->entry_offset;
}

int odk_ring_take(odk_ring *r)
{
    if (!r->entry_pending)
        return ODK_SHM_MISUSE;
    r->entry_pending = 0;
    r->head = r->entry_end;     /* the private read cursor; the shared head stays */
    return ODK_SHM_OK;
}

int odk_ring_release_to(odk_ring *r, uint64_t pos)
{
    _Atomic uint64_t *head = a64(r->base, ODK_RING_OFF_HEAD);
    uint64_t released = atomic_load_explicit(head, RLX);   /* only this reader stores it */
    if (pos < released || pos > r->head || (pos & 7))
        return ODK_SHM_MISUSE;
    /* release: the reader is done with the bytes before the writer may reuse them */
    atomic_store_explicit(head, pos, REL);
    wake_if_flagged(a32(r->base, ODK_RING_OFF_SPACE_WAITER), low_half(r->base, ODK_RING_OFF_HEAD));
    return ODK_SHM_OK;
}

int odk_ring_release(odk_ring *r)
{
    int rc = odk_ring_take(r);
    return rc != ODK_SHM_OK ? rc : odk_ring_release_to(r, r->head);
}

uint64_t odk_ring_free(const odk_ring *r)
{
    uint64_t head = atomic_load_explicit(a64(r->base, ODK_RING_OFF_HEAD), ACQ);
    uint64_t used = r->tail - head;   /* a head past our tail (a broken reader): "full" */
    return used > r->capacity ? 0 : r->capacity - used;
}

int odk_ring_complete_release(odk_ring *requests, odk_ring *completions, int64_t base_offset,
                              int32_t error_code)
{
    if (!requests->entry_pending)
        return ODK_SHM_MISUSE;
    uint8_t c[ODK_RING_COMPLETION_SIZE] = {0};    /* base_offset:i64 error_code:i32 0:u32, LE */
    for (int i = 0; i < 8; i++)
        c[i] = (uint8_t)((uint64_t)base_offset >> (8 * i));
    for (int i = 0; i < 4; i++)
        c[8 + i] = (uint8_t)((uint32_t)error_code >> (8 * i));
    int rc = odk_ring_write(completions, c, sizeof c, requests->entry_tag);
    return rc != ODK_SHM_OK ? rc : odk_ring_release(requests);
}

int64_t odk_ring_read_completion(odk_ring *r, int64_t *base_offset, int32_t *error_code)
{
    if (r->entry_pending)
        return -ODK_SHM_MISUSE;
    int64_t off = odk_ring_peek(r);
    if (off < 0)
        return off;
    if (r->entry_len != ODK_RING_COMPLETION_SIZE)
        return -ODK_SHM_CORRUPT;       /* peeked, not released: the caller drops the ring */
    const uint8_t *c = r->base + off;
    uint64_t base = 0;
    uint32_t code = 0;
    for (int i = 0; i < 8; i++)
        base |= (uint64_t)c[i] << (8 * i);
    for (int i = 0; i < 4; i++)
        code |= (uint32_t)c[8 + i] << (8 * i);
    int64_t tag = r->entry_tag;
    int rc = odk_ring_release(r);
    if (rc != ODK_SHM_OK)
        return -rc;
    *base_offset = (int64_t)base;
    *error_code = (int32_t)code;
    return tag;
}

int odk_ring_wait_readable(odk_ring *r, int64_t timeout_ns)
{
    if (r->entry_pending || r->tail_seen != r->head)
        return 1;
    _Atomic uint64_t *tail = a64(r->base, ODK_RING_OFF_TAIL);
    uint64_t t = atomic_load_explicit(tail, ACQ);
    if (t == r->head) {
        sleep_flagged(a32(r->base, ODK_RING_OFF_DATA_WAITER),
                      low_half(r->base, ODK_RING_OFF_TAIL), (uint32_t)t, timeout_ns);
        t = atomic_load_explicit(tail, ACQ);
    }
    r->tail_seen = t;
    return t != r->head;
}

/* ---- Partition state ---------------------------------------------------------------- */

static inline uint8_t *slot_at(const uint8_t *base, uint32_t slots, uint64_t index)
{
    return (uint8_t *)(uintptr_t)(base + ODK_PSTATE_HEADER_SIZE + (index % slots) * ODK_DESC_SIZE);
}

int odk_pstate_format(uint8_t *base, size_t size, uint32_t slots)
{
    if (slots < ODK_PSTATE_MIN_SLOTS || slots > ODK_PSTATE_MAX_SLOTS
        || size < ODK_PSTATE_HEADER_SIZE + (size_t)slots * ODK_DESC_SIZE)
        return ODK_SHM_BAD_LAYOUT;
    memset(base, 0, ODK_PSTATE_HEADER_SIZE + (size_t)slots * ODK_DESC_SIZE);
    atomic_store_explicit(a32(base, ODK_PSTATE_OFF_VERSION), ODK_PSTATE_VERSION, RLX);
    atomic_store_explicit(a32(base, ODK_PSTATE_OFF_SLOTS), slots, RLX);
    atomic_store_explicit(a32(base, ODK_PSTATE_OFF_SLOT_SIZE), ODK_DESC_SIZE, RLX);
    atomic_store_explicit(a64(base, ODK_PSTATE_OFF_DESC_OFFSET), ODK_PSTATE_HEADER_SIZE, RLX);
    atomic_store_explicit(a32(base, ODK_PSTATE_OFF_MAGIC), ODK_PSTATE_MAGIC, REL);
    return ODK_SHM_OK;
}

int odk_pstate_check(const uint8_t *base, size_t size, uint32_t *slots)
{
    if (size < ODK_PSTATE_HEADER_SIZE
        || atomic_load_explicit(a32(base, ODK_PSTATE_OFF_MAGIC), ACQ) != ODK_PSTATE_MAGIC
        || atomic_load_explicit(a32(base, ODK_PSTATE_OFF_VERSION), RLX) != ODK_PSTATE_VERSION
        || atomic_load_explicit(a32(base, ODK_PSTATE_OFF_SLOT_SIZE), RLX) != ODK_DESC_SIZE
        || atomic_load_explicit(a64(base, ODK_PSTATE_OFF_DESC_OFFSET), RLX) != ODK_PSTATE_HEADER_SIZE)
        return ODK_SHM_BAD_LAYOUT;
    uint32_t n = atomic_load_explicit(a32(base, ODK_PSTATE_OFF_SLOTS), RLX);
    if (n < ODK_PSTATE_MIN_SLOTS || n > ODK_PSTATE_MAX_SLOTS
        || (size - ODK_PSTATE_HEADER_SIZE) / ODK_DESC_SIZE < n)
        return ODK_SHM_BAD_LAYOUT;
    *slots = n;
    return ODK_SHM_OK;
}

static inline void backoff(uint32_t attempt)
{
    if (attempt >= ODK_SEQLOCK_SPINS)
        sched_yield();   /* the writer may be descheduled: let it run */
}

int odk_pstate_read(const uint8_t *base, odk_pstate *out, uint32_t max_retries)
{
    _Atomic uint32_t *seq = a32(base, ODK_PSTATE_OFF_SEQ);
    for (uint32_t attempt = 0; attempt < max_retries; backoff(attempt++)) {
        uint32_t s1 = atomic_load_explicit(seq, ACQ);
        if (s1 & 1)
            continue;   /* an update is in progress (or its writer died in it) */
        out->log_start_offset = atomic_load_explicit(ai64(base, ODK_PSTATE_OFF_LOG_START), RLX);
        out->high_watermark = atomic_load_explicit(ai64(base, ODK_PSTATE_OFF_HIGH_WATERMARK), RLX);
        out->log_end_offset = atomic_load_explicit(ai64(base, ODK_PSTATE_OFF_LOG_END), RLX);
        out->active_segment_base = atomic_load_explicit(ai64(base, ODK_PSTATE_OFF_ACTIVE_SEGMENT), RLX);
        out->window_first = atomic_load_explicit(ai64(base, ODK_PSTATE_OFF_WINDOW_FIRST), RLX);
        out->window_end = atomic_load_explicit(ai64(base, ODK_PSTATE_OFF_WINDOW_END), RLX);
        out->leader_epoch = (int32_t)atomic_load_explicit(a32(base, ODK_PSTATE_OFF_LEADER_EPOCH), RLX);
        out->flags = atomic_load_explicit(a32(base, ODK_PSTATE_OFF_FLAGS), RLX);
        atomic_thread_fence(ACQ);   /* the field loads happen before the re-check */
        if (atomic_load_explicit(seq, RLX) == s1) {
            out->change = s1;
            out->reserved = 0;
            return ODK_SHM_OK;
        }
    }
    return ODK_SHM_TORN;
}

/* The seqlock write of odk_pstate_publish, without its wake-up. */
static uint32_t publish_fields(uint8_t *base, const odk_pstate *st)
{
    _Atomic uint32_t *seq = a32(base, ODK_PSTATE_OFF_SEQ);
    /* odd = "being written". Already odd if a previous writer died mid-update: this
     * update then completes that one. */
    uint32_t s = atomic_load_explicit(seq, RLX) | 1;
    atomic_store_explicit(seq, s, RLX);
    atomic_thread_fence(REL);   /* seq odd is visible before any field changes */
    atomic_store_explicit(ai64(base, ODK_PSTATE_OFF_LOG_START), st->log_start_offset, RLX);
    atomic_store_explicit(ai64(base, ODK_PSTATE_OFF_HIGH_WATERMARK), st->high_watermark, RLX);
    atomic_store_explicit(ai64(base, ODK_PSTATE_OFF_LOG_END), st->log_end_offset, RLX);
    atomic_store_explicit(ai64(base, ODK_PSTATE_OFF_ACTIVE_SEGMENT), st->active_segment_base, RLX);
    atomic_store_explicit(ai64(base, ODK_PSTATE_OFF_WINDOW_FIRST), st->window_first, RLX);
    atomic_store_explicit(ai64(base, ODK_PSTATE_OFF_WINDOW_END), st->window_end, RLX);
    atomic_store_explicit(a32(base, ODK_PSTATE_OFF_LEADER_EPOCH), (uint32_t)st->leader_epoch, RLX);
    atomic_store_explicit(a32(base, ODK_PSTATE_OFF_FLAGS), st->flags, RLX);
    atomic_store_explicit(seq, s + 1, REL);
    return s + 1;
}

uint32_t odk_pstate_publish(uint8_t *base, const odk_pstate *st)
{
    uint32_t s = publish_fields(base, st);
    wake_all((uint32_t *)(uintptr_t)(base + ODK_PSTATE_OFF_SEQ));
    return s;
}

uint32_t odk_pstate_append(uint8_t *base, uint32_t slots, odk_pstate *st,
                           int64_t base_offset, int64_t last_offset, int64_t segment_base,
                           int64_t position, int32_t size, int64_t max_timestamp)
{
    uint64_t index = (uint64_t)st->window_end;
    uint8_t *d = slot_at(base, slots, index);
    /* The slot held index - slots, outside every reader's window (it spans slots - 1):
     * a reader still looking at it sees the stamp change and retries. */
    atomic_store_explicit(a64(d, ODK_DESC_OFF_STAMP), 0, RLX);
    atomic_thread_fence(REL);
    atomic_store_explicit(ai64(d, ODK_DESC_OFF_BASE_OFFSET), base_offset, RLX);
    atomic_store_explicit(ai64(d, ODK_DESC_OFF_LAST_OFFSET), last_offset, RLX);
    atomic_store_explicit(ai64(d, ODK_DESC_OFF_SEGMENT_BASE), segment_base, RLX);
    atomic_store_explicit(ai64(d, ODK_DESC_OFF_POSITION), position, RLX);
    atomic_store_explicit(ai64(d, ODK_DESC_OFF_MAX_TIMESTAMP), max_timestamp, RLX);
    atomic_store_explicit(a32(d, ODK_DESC_OFF_SIZE), (uint32_t)size, RLX);
    atomic_store_explicit(a64(d, ODK_DESC_OFF_STAMP), index + 1, REL);
    st->window_end = (int64_t)(index + 1);
    st->log_end_offset = last_offset + 1;
    return odk_pstate_publish(base, st);
}

uint32_t odk_pstate_append_run(uint8_t *base, uint32_t slots, odk_pstate *st, int64_t segment_base,
                               const odk_batch_desc *descs, uint32_t n)
{
    if (n == 0)
        return odk_pstate_publish(base, st);
    if (n > slots - 1)
        n = slots - 1;                 /* the caller's bug: never more than the window */
    uint64_t end = (uint64_t)st->window_end;
    if (n > 1) {
        /* The slots the run overwrites hold indices end + k - slots (k < n), of which
         * all but the first are in the live window: move its start past them, in a
         * publish that wakes nobody, before any is rewritten. A reader that looked up
         * one of them meanwhile sees its stamp change and retries (odk_pstate_find). */
        int64_t first = (int64_t)(end + n) - (int64_t)slots;
        if (first > st->window_first)
            st->window_first = first;
        publish_fields(base, st);
    }
    for (uint32_t k = 0; k < n; k++) {
        const odk_batch_desc *b = &descs[k];
        uint64_t index = end + k;
        uint8_t *d = slot_at(base, slots, index);
        atomic_store_explicit(a64(d, ODK_DESC_OFF_STAMP), 0, RLX);
        atomic_thread_fence(REL);
        atomic_store_explicit(ai64(d, ODK_DESC_OFF_BASE_OFFSET), b->base_offset, RLX);
        atomic_store_explicit(ai64(d, ODK_DESC_OFF_LAST_OFFSET), b->last_offset, RLX);
        atomic_store_explicit(ai64(d, ODK_DESC_OFF_SEGMENT_BASE), segment_base, RLX);
        atomic_store_explicit(ai64(d, ODK_DESC_OFF_POSITION), b->position, RLX);
        atomic_store_explicit(ai64(d, ODK_DESC_OFF_MAX_TIMESTAMP), b->max_timestamp, RLX);
        atomic_store_explicit(a32(d, ODK_DESC_OFF_SIZE), (uint32_t)b->size, RLX);
        atomic_store_explicit(a64(d, ODK_DESC_OFF_STAMP), index + 1, REL);
    }
    st->window_end = (int64_t)(end + n);
    st->log_end_offset = descs[n - 1].last_offset + 1;
    return odk_pstate_publish(base, st);
}

int odk_pstate_wait(const uint8_t *base, uint32_t last_seen, int64_t timeout_ns)
{
    _Atomic uint32_t *seq = a32(base, ODK_PSTATE_OFF_SEQ);
    if (atomic_load_explicit(seq, ACQ) != last_seen)
        return 1;
    if (timeout_ns != 0)
        odk_futex_wait((uint32_t *)(uintptr_t)seq, last_seen, timeout_ns);
    return atomic_load_explicit(seq, ACQ) != last_seen;
}

/* last_offset of descriptor `index`, if its slot still holds that index (stamp). */
static int desc_last(const uint8_t *base, uint32_t slots, uint64_t index, int64_t *last)
{
    const uint8_t *d = slot_at(base, slots, index);
    uint64_t s1 = atomic_load_explicit(a64(d, ODK_DESC_OFF_STAMP), ACQ);
    if (s1 != index + 1)
        return 0;
    *last = atomic_load_explicit(ai64(d, ODK_DESC_OFF_LAST_OFFSET), RLX);
    atomic_thread_fence(ACQ);
    return atomic_load_explicit(a64(d, ODK_DESC_OFF_STAMP), RLX) == s1;
}

static int desc_read(const uint8_t *base, uint32_t slots, uint64_t index, odk_batch_desc *out)
{
    const uint8_t *d = slot_at(base, slots, index);
    uint64_t s1 = atomic_load_explicit(a64(d, ODK_DESC_OFF_STAMP), ACQ);
    if (s1 != index + 1)
        return 0;
    out->base_offset = atomic_load_explicit(ai64(d, ODK_DESC_OFF_BASE_OFFSET), RLX);
    out->last_offset = atomic_load_explicit(ai64(d, ODK_DESC_OFF_LAST_OFFSET), RLX);
    out->segment_base = atomic_load_explicit(ai64(d, ODK_DESC_OFF_SEGMENT_BASE), RLX);
    out->position = atomic_load_explicit(ai64(d, ODK_DESC_OFF_POSITION), RLX);
    out->max_timestamp = atomic_load_explicit(ai64(d, ODK_DESC_OFF_MAX_TIMESTAMP), RLX);
    out->size = (int32_t)atomic_load_explicit(a32(d, ODK_DESC_OFF_SIZE), RLX);
    out->reserved = 0;
    atomic_thread_fence(ACQ);
    return atomic_load_explicit(a64(d, ODK_DESC_OFF_STAMP), RLX) == s1;
}

int odk_pstate_find(const uint8_t *base, uint32_t slots, int64_t offset,
                    uint32_t max_retries, odk_batch_desc *out)
{
    if (slots < ODK_PSTATE_MIN_SLOTS)
        return ODK_SHM_BAD_LAYOUT;
    for (uint32_t attempt = 0; attempt < max_retries; backoff(attempt++)) {
        odk_pstate st;
        if (odk_pstate_read(base, &st, max_retries) != ODK_SHM_OK)
            return ODK_SHM_TORN;
        /* Indices are unsigned here: whatever the fields hold, slot_at stays in bounds. */
        uint64_t end = (uint64_t)st.window_end, first = (uint64_t)st.window_first;
        uint64_t lo = end >= slots - 1 ? end - (slots - 1) : 0;
        if (lo < first)
            lo = first;
        if (lo >= end)   /* empty window (fresh, or reset after a truncation) */
            return offset >= st.log_end_offset ? ODK_SHM_NOT_YET : ODK_SHM_NOT_IN_WINDOW;
        /* lower bound: the first index in [lo, end) whose last_offset >= offset */
        uint64_t a = lo, b = end;
        int torn = 0;
        while (a < b) {
            uint64_t mid = a + (b - a) / 2;
            int64_t last;
            if (!desc_last(base, slots, mid, &last)) {
                torn = 1;
                break;
            }
            if (last < offset)
                a = mid + 1;
            else
                b = mid;
        }
        if (torn)
            continue;   /* the window moved under us: take a fresh snapshot */
        if (a == end)
            return ODK_SHM_NOT_YET;
        if (!desc_read(base, slots, a, out))
            continue;
        if (a == lo && offset < out->base_offset)
            return ODK_SHM_NOT_IN_WINDOW;
        return ODK_SHM_OK;
    }
    return ODK_SHM_TORN;
}

/* ---- For writers that share one ring struct between threads (issue 11) --------------- */

int odk_ring_wait_writable_at(const odk_ring *r, uint64_t tail, uint32_t len, int64_t timeout_ns)
{
    if (len > ring_max_payload(r))
        return -ODK_SHM_TOO_BIG;
    uint64_t span = ring_span(r, tail, ODK_RING_ENTRY_HEADER + align8(len));
    _Atomic uint64_t *head = a64(r->base, ODK_RING_OFF_HEAD);
    atomic_thread_fence(SEQ);   /* the caller's space-waiter flag, before the head is read */
    uint64_t h = atomic_load_explicit(head, ACQ);
    if (tail + span - h > r->capacity && timeout_ns > 0) {
        odk_futex_wait(low_half(r->base, ODK_RING_OFF_HEAD), (uint32_t)h, timeout_ns);
        h = atomic_load_explicit(head, ACQ);
    }
    return tail + span - h <= r->capacity;
}
