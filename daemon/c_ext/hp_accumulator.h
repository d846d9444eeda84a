/* The Producer accumulator's state and its core (included by hp_producer.c only; split
 * out to keep that file readable): the Accumulator, Topic and Link structs, the sticky
 * partitioner, the topic table, and opening and sealing a link's batch in its ring
 * reservation. The contract, locking and ownership rules are at the top of
 * hp_producer.c; every function here runs with the GIL held, and the *_locked ones
 * with the link's mutex held too.
 */
#ifndef ODRADEK_HP_ACCUMULATOR_H
#define ODRADEK_HP_ACCUMULATOR_H

/* ---- The accumulator ------------------------------------------------------------------ */

typedef struct {
    uint32_t tag;
    int32_t count;
    PyObject *pending;   /* list (one entry per record) or NULL: no callbacks */
} Sealed;

typedef struct Topic Topic;

typedef struct {
    pthread_mutex_t lock;
    Topic *topic;
    int32_t partition;
    uint32_t limit;          /* the largest batch: max.message.bytes, or the ring's max */
    odk_ring *ring;          /* the Ring's cffi struct: mapped until the Producer closes the Ring, after close() */
    PyObject *owner;
    odk_ring *completions;   /* the completion ring's, read by collect(); NULL: none given */
    PyObject *completions_owner;
    /* the open batch (batch != NULL): a reservation of cap bytes in the ring */
    uint8_t *batch;
    uint32_t used, cap;
    int32_t count, base_seq;
    int64_t base_ts, max_ts, deadline_ns;
    PyObject *pending;       /* as Sealed.pending */
    /* across batches */
    int32_t next_seq;
    uint32_t next_tag;
    int in_txn;              /* added to the open transaction (AddPartitionsToTxn): txn_add */
    int sleepers;            /* wait_space callers asleep (the ring's space_waiter flag) */
    Sealed *inflight;        /* sealed, unacknowledged: a circular queue in seal order */
    size_t in_first, in_len, in_cap;
} Link;

struct Topic {
    PyObject *name;
    int32_t count;           /* partitions; -1 unknown */
    int32_t sticky;          /* keyless records' partition; -1 none */
    Link **links;            /* by partition; NULL where none is open */
    int32_t nlinks;
};

typedef struct {
    PyObject_HEAD
    PyObject *topics;        /* name -> capsule of a Topic (the capsule owns it): the topic set */
    Topic *last;             /* the topic of the previous produce(), in topics */
    Link **links;            /* by link id */
    Py_ssize_t nlinks;
    uint32_t batch_size;
    int64_t linger_ns;
    int acks;
    int64_t producer_id;
    int16_t producer_epoch;
    uint16_t attributes;     /* of every batch: ODK_ATTR_TRANSACTIONAL_MASK or 0 */
    uint8_t *doorbell;       /* ours: the sender sleeps on it */
    PyObject *doorbell_owner;
    int64_t sender_wake_ns;  /* when the sender next looks at linger deadlines */
    long long queued;        /* records accepted, ever */
    long long settled;       /* records of batches collect() found done with no report to make, ever */
    int closed;
    atomic_int waiters;      /* threads inside wait_space */
    uint64_t rng;
} Accumulator;

static uint32_t rand_below(Accumulator *a, uint32_t n)
{
    uint64_t x = a->rng;   /* xorshift64* */
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    a->rng = x;
    return (uint32_t)(((x * 0x2545F4914F6CDD1DULL) >> 32) % n);
}

/* StickyPartitioner.partition / new_batch (client/partitioner.py), per topic. */
static int32_t sticky_choose(Accumulator *a, Topic *t, int32_t old)
{
    int32_t n = t->count;
    int32_t p;
    if (old < 0 || old >= n || n == 1)
        p = (int32_t)rand_below(a, (uint32_t)n);
    else {
        p = (int32_t)rand_below(a, (uint32_t)n - 1);
        if (p >= old)
            p++;
    }
    t->sticky = p;
    return p;
}

static int32_t sticky_partition(Accumulator *a, Topic *t)
{
    if (t->sticky < 0 || t->sticky >= t->count)
        return sticky_choose(a, t, t->sticky);
    return t->sticky;
}

static int32_t sticky_new_batch(Accumulator *a, Topic *t, int32_t prev)
{
    if (t->count <= 0)
        return prev;
    if (t->sticky < 0 || t->sticky == prev || t->sticky >= t->count)
        return sticky_choose(a, t, t->sticky);
    return t->sticky;
}

static inline Link *link_of(Topic *t, int32_t p)
{
    return (t != NULL && p < t->nlinks) ? t->links[p] : NULL;
}

/* Whether a record may enter l's batch now: a transactional accumulator's link must be
 * in the open transaction (else produce() returns PRODUCE_NEED_TXN). */
static inline int txn_ready(const Accumulator *a, const Link *l)
{
    return !a->attributes || l->in_txn;
}

static Topic *find_topic(Accumulator *a, PyObject *name)
{
    if (a->last != NULL && a->last->name == name)
        return a->last;
    PyObject *cap = PyDict_GetItemWithError(a->topics, name);   /* borrowed */
    if (cap == NULL)
        return NULL;
    a->last = PyCapsule_GetPointer(cap, NULL);
    return a->last;
}

static void topic_free(PyObject *capsule)
{
    Topic *t = PyCapsule_GetPointer(capsule, NULL);
    Py_XDECREF(t->name);
    PyMem_Free(t->links);
    PyMem_Free(t);
}

static Topic *topic_for(Accumulator *a, PyObject *name)
{
    Topic *t = find_topic(a, name);
    if (t != NULL || PyErr_Occurred())
        return t;
    t = PyMem_Calloc(1, sizeof *t);
    if (t == NULL)
        return (Topic *)PyErr_NoMemory();
    t->name = Py_NewRef(name);
    t->count = -1;
    t->sticky = -1;
    PyObject *cap = PyCapsule_New(t, NULL, topic_free);
    if (cap == NULL) {
        Py_DECREF(name);
        PyMem_Free(t);
        return NULL;
    }
    int rc = PyDict_SetItem(a->topics, name, cap);
    Py_DECREF(cap);                  /* on failure, topic_free frees t */
    return rc < 0 ? NULL : t;
}

static int inflight_reserve(Link *l)
{
    if (l->in_len < l->in_cap)
        return 0;
    size_t cap = l->in_cap ? l->in_cap * 2 : 16;
    Sealed *q = malloc(cap * sizeof *q);
    if (q == NULL)
        return -1;
    for (size_t i = 0; i < l->in_len; i++)
        q[i] = l->inflight[(l->in_first + i) % l->in_cap];
    free(l->inflight);
    l->inflight = q;
    l->in_first = 0;
    l->in_cap = cap;
    return 0;
}

/* Seal the open batch (link locked): header, CRC, commit, into the in-flight queue.
 * An empty one is dropped (its reservation cancelled). -1 (MemoryError set) if the
 * in-flight queue cannot grow: the batch stays open. */
static int seal_locked(Accumulator *a, Link *l)
{
    if (l->batch == NULL)
        return 0;
    if (l->count == 0) {
        odk_ring_cancel(l->ring);
        l->batch = NULL;
        Py_CLEAR(l->pending);   /* an empty list (no record): no finalizer runs */
        return 0;
    }
    if (inflight_reserve(l) < 0) {
        PyErr_NoMemory();
        return -1;
    }
    fill_header(l->batch, l->used, l->count, l->base_ts, l->max_ts, a->producer_id,
                a->producer_epoch, l->base_seq, a->attributes);
    odk_ring_commit(l->ring, l->used);
    Sealed *s = &l->inflight[(l->in_first + l->in_len) % l->in_cap];
    s->tag = l->next_tag - 1;
    s->count = l->count;
    s->pending = l->pending;
    l->in_len++;
    l->pending = NULL;
    if (a->producer_id >= 0)
        l->next_seq = (int32_t)(((uint32_t)l->next_seq + (uint32_t)l->count) & MAX_SEQUENCE);
    l->batch = NULL;
    return 0;
}

/* Open a batch for a record of `bytes` (with the header) in l (locked). Returns 0,
 * PRODUCE_FULL / PRODUCE_TOO_LARGE with *want the reservation it needs, or -1 when the
 * ring refuses as misused (a reservation already open: a bug, the caller raises
 * SystemError once the lock is released). */
static int open_locked(Accumulator *a, Link *l, uint64_t bytes, uint32_t *want)
{
    uint64_t cap = bytes > a->batch_size ? bytes : a->batch_size;
    if (cap > l->limit)
        cap = l->limit;
    *want = (uint32_t)cap;
    int64_t off = odk_ring_reserve(l->ring, (uint32_t)cap, l->next_tag);
    if (off == -ODK_SHM_FULL)
        return PRODUCE_FULL;
    if (off == -ODK_SHM_TOO_BIG)
        return PRODUCE_TOO_LARGE;   /* limit above the ring's max payload */
    if (off < 0)
        return -1;
    l->batch = l->ring->base + off;
    l->cap = (uint32_t)cap;
    l->used = ODK_BATCH_HEADER_SIZE;
    l->count = 0;
    l->base_seq = a->producer_id >= 0 ? l->next_seq : NO_SEQUENCE;
    l->next_tag++;
    l->deadline_ns = now_ns(CLOCK_MONOTONIC) + a->linger_ns;
    return 0;
}

static inline int fits(Accumulator *a, Link *l, const Rec *r)
{
    int64_t d = 0;
    if (l->count > 0 && __builtin_sub_overflow(r->timestamp, l->base_ts, &d))
        return 0;
    uint64_t end = l->used + rec_size(r, d, l->count);
    return end <= l->cap && end <= a->batch_size;
}

static PyObject *slow(int code, int32_t partition, uint64_t bytes, uint32_t limit)
{
    return Py_BuildValue("(iiKI)", code, (int)partition, (unsigned long long)bytes, (unsigned)limit);
}

#endif
