/* The Producer's record accumulator (odradek._hotpath): one C call per produce().
 *
 * What it owns
 *   Accumulator holds, per partition the Producer has opened (a "link"), the open batch
 *   and the batches sent but not yet acknowledged. The open batch is built in place, in
 *   a reservation of the partition's produce ring (odk_ring_reserve): records are
 *   encoded straight into shared memory, and sealing fills the v2 header (offsets
 *   ODK_BATCH_OFF_*, the twin of client/records/layout.py), computes the CRC-32C and
 *   commits the entry shrunk to the batch's size (odk_ring_commit, which wakes the
 *   leader and rings its doorbell). Nothing is copied after the record's own bytes, and
 *   a batch never waits for ring space once open: its space was taken when it opened.
 *   A process killed mid-batch leaves an uncommitted reservation, which no reader sees.
 *
 * Per record (Accumulator.produce, METH_FASTCALL, confluent-kafka's argument order):
 *   argument checks (bytes, str as UTF-8, bytearray/memoryview as their bytes, None;
 *   anything else TypeError naming the argument, before anything changes), the
 *   timestamp (now, ms, when None), the partition (explicit; toPositive(murmur2(key)) %
 *   count for keyed records, exactly client/partitioner.py; keyless records stick to a
 *   partition until its batch is sealed, KIP-480), the record's encoding (zigzag
 *   varints, as client/records/_builder.py's BatchBuilder writes it: byte-identical,
 *   tests/client/test_hotpath_producer.py), sealing when batch.size is reached or
 *   linger.ms is 0. Returns None, or for what it cannot do a tuple (code, partition,
 *   bytes, limit) for the Python slow path (client/producer.py): PRODUCE_NEED_COUNT
 *   (the topic's partition count is unknown), PRODUCE_NEED_LINK (the partition has no
 *   rings yet), PRODUCE_FULL (the ring lacks `bytes` of room: wait_space, retry),
 *   PRODUCE_TOO_LARGE (the record's batch would exceed `limit`). With any of these the
 *   record is not queued (a batch sealed on the way stays sealed: it was complete).
 *
 * Completion bookkeeping: per sealed batch (tag, record count, and only when some
 *   record of it has on_delivery, a list with one entry per record: None, or the
 *   (callback, key, value, headers, timestamp) tuple its delivery report needs). No
 *   Python object is kept for a record without a callback.
 *
 * Threading and locks
 *   - Each link has its own mutex (per partition, never per producer), held only while
 *     its open batch, cursors or in-flight queue change, never across a call that can
 *     block (the ring commit's futex wake does not block), and never while Python code
 *     can run: every Python object a record needs is made before the lock is taken, and
 *     released after (an allocation can run the garbage collector, hence finalizers).
 *   - produce() (any thread), seal_due() and complete() (the sender thread), seal_all()
 *     (flush) all hold the GIL; wait_space() releases it while it sleeps on the ring's
 *     head futex (taking the link mutex only to read the cursor and set the waiter flag).
 *   - The topic table (topics, partition counts, links, sticky partitions) changes only
 *     with the GIL held, from the calls above and set_partition_count / add_link.
 *   - The rings' memory belongs to the Python Ring objects (the cffi odk_ring struct and
 *     the mapping); each link keeps a reference to its Ring, and close() waits for every
 *     wait_space() to leave before the Producer unmaps them.
 */
#define _GNU_SOURCE
#include "hotpath.h"
#include "odradek.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

enum {
    PRODUCE_NEED_COUNT = 1,
    PRODUCE_NEED_LINK = 2,
    PRODUCE_FULL = 3,
    PRODUCE_TOO_LARGE = 4
};

#define MAX_SEQUENCE 0x7fffffffu   /* records.MAX_SEQUENCE: sequences wrap to 0 after it */
#define NO_SEQUENCE (-1)
#define WAIT_CHUNK_NS 50000000LL   /* wait_space returns at least this often: signals */
#define MAX_PARTITION 1000000      /* links are kept in an array indexed by partition */

/* ---- Byte helpers -------------------------------------------------------------------- */

static inline void store_be16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }
static inline void store_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v;
}
static inline void store_be64(uint8_t *p, uint64_t v)
{
    store_be32(p, (uint32_t)(v >> 32));
    store_be32(p + 4, (uint32_t)v);
}

static inline uint64_t zigzag(int64_t n) { return ((uint64_t)n << 1) ^ (uint64_t)(n >> 63); }

static inline size_t varint_size(uint64_t z)
{
    size_t n = 1;
    while (z > 0x7F) {
        z >>= 7;
        n++;
    }
    return n;
}

static inline uint8_t *put_varint(uint8_t *p, uint64_t z)
{
    while (z > 0x7F) {
        *p++ = (uint8_t)((z & 0x7F) | 0x80);
        z >>= 7;
    }
    *p++ = (uint8_t)z;
    return p;
}

/* Kafka's Utils.murmur2 (client/partitioner.py's _murmur2_u32), as an unsigned int. */
static uint32_t murmur2(const uint8_t *d, size_t n)
{
    const uint32_t m = 0x5bd1e995u;
    uint32_t h = 0x9747b28cu ^ (uint32_t)n;
    size_t words = n / 4;
    for (size_t i = 0; i < words; i++) {
        const uint8_t *w = d + 4 * i;
        uint32_t k = (uint32_t)w[0] | (uint32_t)w[1] << 8 | (uint32_t)w[2] << 16 | (uint32_t)w[3] << 24;
        k *= m;
        k ^= k >> 24;
        k *= m;
        h *= m;
        h ^= k;
    }
    const uint8_t *t = d + 4 * words;
    switch (n & 3) {
    case 3: h ^= (uint32_t)t[2] << 16; /* fall through */
    case 2: h ^= (uint32_t)t[1] << 8;  /* fall through */
    case 1: h ^= t[0]; h *= m;
    }
    h ^= h >> 13;
    h *= m;
    return h ^ (h >> 15);
}

static int64_t now_ns(clockid_t clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* ---- One record, its arguments converted ------------------------------------------------
 * A Field is a byte string (p, n) or null (n = -1). `obj` is a new reference when the
 * Field made or kept a bytes object (the delivery report's key/value, or a fallback
 * copy); `view` is held while the bytes of a bytearray/memoryview are borrowed (a held
 * export keeps a bytearray from being resized meanwhile). */
typedef struct {
    const uint8_t *p;
    Py_ssize_t n;
    PyObject *obj;
    Py_buffer view;
    int held;
} Field;

typedef struct {
    PyObject *key;       /* str, a new reference */
    const uint8_t *kp;   /* its UTF-8 */
    Py_ssize_t kn;
    PyObject *value;     /* bytes (new reference) or NULL for None */
} Header;

typedef struct {
    Field key, value;
    Header *headers;
    Py_ssize_t nheaders;
    int64_t timestamp;
    uint64_t body_wo_delta;   /* the record's body less its two deltas */
} Rec;

static void field_clear(Field *f)
{
    if (f->held)
        PyBuffer_Release(&f->view);
    Py_CLEAR(f->obj);
    f->held = 0;
}

static void rec_clear(Rec *r)
{
    field_clear(&r->key);
    field_clear(&r->value);
    for (Py_ssize_t i = 0; i < r->nheaders; i++) {
        Py_XDECREF(r->headers[i].key);
        Py_XDECREF(r->headers[i].value);
    }
    PyMem_Free(r->headers);
    r->headers = NULL;
    r->nheaders = 0;
}

/* A new bytes object holding o's bytes (bytes, str as UTF-8, bytearray, memoryview),
 * Py_None for None, or NULL with TypeError naming `what`. */
static PyObject *as_bytes(PyObject *o, const char *what)
{
    if (o == Py_None || PyBytes_CheckExact(o)) {
        Py_INCREF(o);
        return o;
    }
    if (PyUnicode_Check(o))
        return PyUnicode_AsUTF8String(o);
    if (PyBytes_Check(o) || PyByteArray_Check(o) || PyMemoryView_Check(o))
        return PyBytes_FromObject(o);
    PyErr_Format(PyExc_TypeError, "%s must be bytes, str or None, not %.100s", what,
                 Py_TYPE(o)->tp_name);
    return NULL;
}

/* Fill f from o. keep: the delivery report needs a bytes object (f->obj). */
static int field_set(Field *f, PyObject *o, const char *what, int keep)
{
    memset(f, 0, sizeof *f);
    if (o == Py_None) {
        f->n = -1;
        return 0;
    }
    if (keep) {
        f->obj = as_bytes(o, what);
        if (f->obj == NULL)
            return -1;
        o = f->obj;
    }
    if (PyBytes_Check(o)) {
        f->p = (const uint8_t *)PyBytes_AS_STRING(o);
        f->n = PyBytes_GET_SIZE(o);
        return 0;
    }
    if (PyUnicode_Check(o)) {
        const char *s = PyUnicode_AsUTF8AndSize(o, &f->n);
        if (s == NULL)
            return -1;
        f->p = (const uint8_t *)s;
        return 0;
    }
    if (PyByteArray_Check(o) || PyMemoryView_Check(o)) {
        if (PyObject_GetBuffer(o, &f->view, PyBUF_SIMPLE) == 0) {
            f->held = 1;
            f->p = f->view.buf;
            f->n = f->view.len;
            return 0;
        }
        PyErr_Clear();   /* not contiguous: its bytes, copied */
        f->obj = PyBytes_FromObject(o);
        if (f->obj == NULL)
            return -1;
        f->p = (const uint8_t *)PyBytes_AS_STRING(f->obj);
        f->n = PyBytes_GET_SIZE(f->obj);
        return 0;
    }
    PyErr_Format(PyExc_TypeError, "%s must be bytes, str or None, not %.100s", what,
                 Py_TYPE(o)->tp_name);
    return -1;
}

/* Headers: None, a dict, or a list/tuple of (str, bytes-or-None) pairs, copied into
 * objects this call owns (so no other code can change them while they are encoded). */
static int headers_set(Rec *r, PyObject *headers)
{
    r->headers = NULL;
    r->nheaders = 0;
    if (headers == Py_None)
        return 0;
    PyObject *items;
    if (PyDict_Check(headers))
        items = PyDict_Items(headers);
    else if (PyList_Check(headers))
        items = PyList_AsTuple(headers);
    else if (PyTuple_Check(headers)) {
        items = headers;
        Py_INCREF(items);
    } else {
        PyErr_Format(PyExc_TypeError, "headers must be a dict or a list of (str, bytes) "
                     "pairs, not %.100s", Py_TYPE(headers)->tp_name);
        return -1;
    }
    if (items == NULL)
        return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(items);
    if (n == 0) {
        Py_DECREF(items);
        return 0;
    }
    r->headers = PyMem_Calloc((size_t)n, sizeof(Header));
    if (r->headers == NULL) {
        Py_DECREF(items);
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(items, i), *k, *v;
        if (PyTuple_Check(item) && PyTuple_GET_SIZE(item) == 2) {
            k = PyTuple_GET_ITEM(item, 0);
            v = PyTuple_GET_ITEM(item, 1);
        } else if (PyList_Check(item) && PyList_GET_SIZE(item) == 2) {
            k = PyList_GET_ITEM(item, 0);
            v = PyList_GET_ITEM(item, 1);
        } else {
            PyErr_Format(PyExc_TypeError, "each header must be a (str, bytes) pair, not %.100s",
                         Py_TYPE(item)->tp_name);
            goto fail;
        }
        if (!PyUnicode_Check(k)) {
            PyErr_Format(PyExc_TypeError, "a header key must be str, not %.100s", Py_TYPE(k)->tp_name);
            goto fail;
        }
        Header *h = &r->headers[i];
        Py_INCREF(k);
        h->key = k;
        r->nheaders = i + 1;
        h->kp = (const uint8_t *)PyUnicode_AsUTF8AndSize(k, &h->kn);
        if (h->kp == NULL)
            goto fail;
        h->value = as_bytes(v, "a header value");
        if (h->value == NULL)
            goto fail;
        if (h->value == Py_None)
            Py_CLEAR(h->value);
    }
    Py_DECREF(items);
    return 0;
fail:
    Py_DECREF(items);
    return -1;
}

static int rec_set(Rec *r, PyObject *key, PyObject *value, PyObject *headers, int keep)
{
    memset(r, 0, sizeof *r);
    r->key.n = r->value.n = -1;
    /* headers first: they allocate tuples (the collector may run), the fields then
     * borrow bytes that nothing can change until the call returns */
    if (headers_set(r, headers) < 0 || field_set(&r->value, value, "value", keep) < 0
        || field_set(&r->key, key, "key", keep) < 0) {
        rec_clear(r);
        return -1;
    }
    uint64_t size = 1;   /* attributes */
    size += r->key.n < 0 ? 1 : varint_size(zigzag(r->key.n)) + (uint64_t)r->key.n;
    size += r->value.n < 0 ? 1 : varint_size(zigzag(r->value.n)) + (uint64_t)r->value.n;
    size += varint_size(zigzag(r->nheaders));
    for (Py_ssize_t i = 0; i < r->nheaders; i++) {
        Header *h = &r->headers[i];
        size += varint_size(zigzag(h->kn)) + (uint64_t)h->kn;
        if (h->value == NULL)
            size += 1;
        else {
            Py_ssize_t vn = PyBytes_GET_SIZE(h->value);
            size += varint_size(zigzag(vn)) + (uint64_t)vn;
        }
    }
    r->body_wo_delta = size;
    return 0;
}

/* Bytes the record takes in a batch, at this timestamp and offset deltas. */
static inline uint64_t rec_size(const Rec *r, int64_t ts_delta, int32_t offset_delta)
{
    uint64_t body = r->body_wo_delta + varint_size(zigzag(ts_delta)) + varint_size(zigzag(offset_delta));
    return varint_size(zigzag((int64_t)body)) + body;
}

static inline uint8_t *put_bytes(uint8_t *p, const uint8_t *b, Py_ssize_t n)
{
    if (n < 0)
        return put_varint(p, 1);   /* zigzag(-1): null */
    p = put_varint(p, zigzag(n));
    memcpy(p, b, (size_t)n);
    return p + n;
}

/* Write the record at p (rec_size bytes); returns the end. */
static uint8_t *write_record(uint8_t *p, const Rec *r, int64_t ts_delta, int32_t offset_delta)
{
    uint64_t body = r->body_wo_delta + varint_size(zigzag(ts_delta)) + varint_size(zigzag(offset_delta));
    p = put_varint(p, zigzag((int64_t)body));
    *p++ = 0;   /* attributes */
    p = put_varint(p, zigzag(ts_delta));
    p = put_varint(p, zigzag(offset_delta));
    p = put_bytes(p, r->key.p, r->key.n);
    p = put_bytes(p, r->value.p, r->value.n);
    p = put_varint(p, zigzag(r->nheaders));
    for (Py_ssize_t i = 0; i < r->nheaders; i++) {
        const Header *h = &r->headers[i];
        p = put_bytes(p, h->kp, h->kn);
        if (h->value == NULL)
            p = put_varint(p, 1);
        else
            p = put_bytes(p, (const uint8_t *)PyBytes_AS_STRING(h->value), PyBytes_GET_SIZE(h->value));
    }
    return p;
}

/* The v2 header of a batch of `size` bytes at b (records already in place), and its CRC. */
static void fill_header(uint8_t *b, uint32_t size, int32_t count, int64_t base_ts, int64_t max_ts,
                        int64_t producer_id, int16_t producer_epoch, int32_t base_seq)
{
    store_be64(b + ODK_BATCH_OFF_BASE_OFFSET, 0);
    store_be32(b + ODK_BATCH_OFF_LENGTH, size - ODK_BATCH_OVERHEAD);
    store_be32(b + ODK_BATCH_OFF_LEADER_EPOCH, (uint32_t)-1);
    b[ODK_BATCH_OFF_MAGIC] = 2;
    store_be16(b + ODK_BATCH_OFF_ATTRIBUTES, 0);
    store_be32(b + ODK_BATCH_OFF_LAST_DELTA, (uint32_t)(count - 1));
    store_be64(b + ODK_BATCH_OFF_BASE_TS, (uint64_t)base_ts);
    store_be64(b + ODK_BATCH_OFF_MAX_TS, (uint64_t)max_ts);
    store_be64(b + ODK_BATCH_OFF_PRODUCER_ID, (uint64_t)producer_id);
    store_be16(b + ODK_BATCH_OFF_PRODUCER_EPOCH, (uint16_t)producer_epoch);
    store_be32(b + ODK_BATCH_OFF_BASE_SEQ, (uint32_t)base_seq);
    store_be32(b + ODK_BATCH_OFF_RECORDS, (uint32_t)count);
    store_be32(b + ODK_BATCH_OFF_CRC, odk_crc32c(0, b + ODK_BATCH_OFF_ATTRIBUTES, size - ODK_BATCH_OFF_ATTRIBUTES));
}

static int timestamp_of(PyObject *o, int64_t *out)
{
    if (o == Py_None) {
        *out = now_ns(CLOCK_REALTIME) / 1000000;
        return 0;
    }
    if (!PyLong_Check(o) || PyBool_Check(o)) {
        PyErr_Format(PyExc_TypeError, "timestamp must be an int (ms) or None, not %.100s",
                     Py_TYPE(o)->tp_name);
        return -1;
    }
    int overflow;
    long long v = PyLong_AsLongLongAndOverflow(o, &overflow);
    if (overflow) {
        PyErr_SetString(PyExc_ValueError, "timestamp is outside the int64 range");
        return -1;
    }
    if (v == -1 && PyErr_Occurred())
        return -1;
    *out = v;
    return 0;
}

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
    odk_ring *ring;          /* the Ring's cffi struct (owner keeps it alive) */
    PyObject *owner;
    /* the open batch (batch != NULL): a reservation of cap bytes in the ring */
    uint8_t *batch;
    uint32_t used, cap;
    int32_t count, base_seq;
    int64_t base_ts, max_ts, deadline_ns;
    PyObject *pending;       /* as Sealed.pending */
    /* across batches */
    int32_t next_seq;
    uint32_t next_tag;
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
    PyObject *topics;        /* name -> capsule of a Topic */
    Topic **all_topics;
    Py_ssize_t ntopics;
    Topic *last;             /* the topic of the previous produce() */
    Link **links;            /* by link id */
    Py_ssize_t nlinks;
    uint32_t batch_size;
    int64_t linger_ns;
    int acks;
    int64_t producer_id;
    int16_t producer_epoch;
    uint8_t *doorbell;       /* ours: the sender sleeps on it */
    PyObject *doorbell_owner;
    int64_t sender_wake_ns;  /* when the sender next looks at linger deadlines */
    long long queued;        /* records accepted, ever */
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

static Topic *topic_for(Accumulator *a, PyObject *name)
{
    Topic *t = find_topic(a, name);
    if (t != NULL || PyErr_Occurred())
        return t;
    Topic **grown = PyMem_Realloc(a->all_topics, (size_t)(a->ntopics + 1) * sizeof *grown);
    if (grown == NULL)
        return (Topic *)PyErr_NoMemory();
    a->all_topics = grown;
    t = PyMem_Calloc(1, sizeof *t);
    if (t == NULL)
        return (Topic *)PyErr_NoMemory();
    PyObject *cap = PyCapsule_New(t, NULL, NULL);
    if (cap == NULL || PyDict_SetItem(a->topics, name, cap) < 0) {
        Py_XDECREF(cap);
        PyMem_Free(t);
        return NULL;
    }
    Py_DECREF(cap);
    Py_INCREF(name);
    t->name = name;
    t->count = -1;
    t->sticky = -1;
    a->all_topics[a->ntopics++] = t;
    return t;
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
                a->producer_epoch, l->base_seq);
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
 * or PRODUCE_FULL / PRODUCE_TOO_LARGE with *want the reservation it needs. */
static int open_locked(Accumulator *a, Link *l, uint64_t bytes, uint32_t *want)
{
    uint64_t cap = bytes > a->batch_size ? bytes : a->batch_size;
    if (cap > l->limit)
        cap = l->limit;
    *want = (uint32_t)cap;
    int64_t off = odk_ring_reserve(l->ring, (uint32_t)cap, l->next_tag);
    if (off == -ODK_SHM_FULL)
        return PRODUCE_FULL;
    if (off < 0)
        return PRODUCE_TOO_LARGE;   /* TOO_BIG: limit above the ring's max payload */
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

/* ---- produce() --------------------------------------------------------------------------- */

static const char *const produce_kwlist[] = {"topic", "value", "key", "headers", "partition",
                                             "timestamp", "on_delivery"};
#define PRODUCE_NARGS 7

static int parse_produce_args(PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
                              PyObject **out)
{
    if (nargs > PRODUCE_NARGS) {
        PyErr_Format(PyExc_TypeError, "produce() takes at most %d arguments (%zd given)",
                     PRODUCE_NARGS, nargs);
        return -1;
    }
    int given;
    for (int i = 0; i < PRODUCE_NARGS; i++)
        out[i] = i < nargs ? args[i] : Py_None;
    given = (1 << nargs) - 1;
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    for (Py_ssize_t j = 0; j < nkw; j++) {
        PyObject *name = PyTuple_GET_ITEM(kwnames, j);
        int k = 0;
        while (k < PRODUCE_NARGS && PyUnicode_CompareWithASCIIString(name, produce_kwlist[k]) != 0)
            k++;
        if (k == PRODUCE_NARGS) {
            PyErr_Format(PyExc_TypeError, "produce() got an unexpected keyword argument '%U'", name);
            return -1;
        }
        if (given & (1 << k)) {
            PyErr_Format(PyExc_TypeError, "produce() got multiple values for argument '%s'",
                         produce_kwlist[k]);
            return -1;
        }
        given |= 1 << k;
        out[k] = args[nargs + j];
    }
    if (!(given & 1)) {
        PyErr_SetString(PyExc_TypeError, "produce() missing required argument 'topic'");
        return -1;
    }
    return 0;
}

static PyObject *Accumulator_produce(Accumulator *a, PyObject *const *args, Py_ssize_t nargs,
                                     PyObject *kwnames)
{
    PyObject *argv[PRODUCE_NARGS];
    if (parse_produce_args(args, nargs, kwnames, argv) < 0)
        return NULL;
    PyObject *topic = argv[0], *callback = argv[6];
    if (a->closed) {
        PyErr_SetString(PyExc_RuntimeError, "produce() on a closed Producer");
        return NULL;
    }
    if (!PyUnicode_Check(topic)) {
        PyErr_Format(PyExc_TypeError, "topic must be str, not %.100s", Py_TYPE(topic)->tp_name);
        return NULL;
    }
    if (callback != Py_None && !PyCallable_Check(callback)) {
        PyErr_Format(PyExc_TypeError, "on_delivery must be callable or None, not %.100s",
                     Py_TYPE(callback)->tp_name);
        return NULL;
    }
    int32_t partition = -1;
    if (argv[4] != Py_None) {
        if (!PyLong_Check(argv[4]) || PyBool_Check(argv[4])) {
            PyErr_Format(PyExc_TypeError, "partition must be an int or None, not %.100s",
                         Py_TYPE(argv[4])->tp_name);
            return NULL;
        }
        int overflow;
        long long p = PyLong_AsLongLongAndOverflow(argv[4], &overflow);
        if (overflow > 0 || (overflow == 0 && p > MAX_PARTITION)) {
            PyErr_Format(PyExc_ValueError, "partition %R is out of range", argv[4]);
            return NULL;
        }
        partition = (overflow < 0 || p < 0) ? -1 : (int32_t)p;   /* negative: choose one */
    }
    Rec r;
    if (timestamp_of(argv[5], &r.timestamp) < 0)
        return NULL;
    int64_t timestamp = r.timestamp;
    int keep = callback != Py_None;
    if (rec_set(&r, argv[2], argv[1], argv[3], keep) < 0)
        return NULL;
    r.timestamp = timestamp;

    /* Python objects of the delivery report: made before any lock */
    PyObject *item = NULL, *spare = NULL, *result = NULL;
    if (keep) {
        PyObject *hl = PyList_New(r.nheaders);
        if (hl == NULL)
            goto done;
        for (Py_ssize_t i = 0; i < r.nheaders; i++) {
            PyObject *v = r.headers[i].value ? r.headers[i].value : Py_None;
            PyObject *pair = PyTuple_Pack(2, r.headers[i].key, v);
            if (pair == NULL) {
                Py_DECREF(hl);
                goto done;
            }
            PyList_SET_ITEM(hl, i, pair);
        }
        item = Py_BuildValue("(OOONL)", callback, r.key.obj ? r.key.obj : Py_None,
                             r.value.obj ? r.value.obj : Py_None, hl, (long long)timestamp);
        spare = PyList_New(0);
        if (item == NULL || spare == NULL)
            goto done;
    }

    Topic *t = find_topic(a, topic);
    if (t == NULL && PyErr_Occurred())
        goto done;
    int sticky = 0;
    if (partition < 0) {
        if (t == NULL || t->count <= 0) {
            result = slow(PRODUCE_NEED_COUNT, -1, 0, 0);
            goto done;
        }
        if (r.key.n >= 0)
            partition = (int32_t)((murmur2(r.key.p, (size_t)r.key.n) & 0x7fffffffu) % (uint32_t)t->count);
        else {
            partition = sticky_partition(a, t);
            sticky = 1;
        }
    }
    Link *l = link_of(t, partition);
    if (l == NULL) {
        result = slow(PRODUCE_NEED_LINK, partition, 0, 0);
        goto done;
    }
    uint64_t alone = ODK_BATCH_HEADER_SIZE + rec_size(&r, 0, 0);
    if (alone > l->limit) {
        result = slow(PRODUCE_TOO_LARGE, partition, alone, l->limit);
        goto done;
    }
    int ring_ours = 0;
    pthread_mutex_lock(&l->lock);
    if (l->batch != NULL && !fits(a, l, &r)) {
        if (seal_locked(a, l) < 0)
            goto unlock_fail;
        ring_ours = a->acks == 0;
        if (sticky) {
            pthread_mutex_unlock(&l->lock);
            partition = sticky_new_batch(a, t, partition);
            l = link_of(t, partition);
            if (l == NULL) {
                result = slow(PRODUCE_NEED_LINK, partition, 0, 0);
                goto done;
            }
            if (alone > l->limit) {
                result = slow(PRODUCE_TOO_LARGE, partition, alone, l->limit);
                goto done;
            }
            pthread_mutex_lock(&l->lock);
            if (l->batch != NULL && !fits(a, l, &r) && seal_locked(a, l) < 0)
                goto unlock_fail;
        }
    }
    if (l->batch == NULL) {
        uint32_t want;
        int rc = open_locked(a, l, alone, &want);
        if (rc) {
            pthread_mutex_unlock(&l->lock);
            result = slow(rc, partition, want, l->limit);
            goto done;
        }
        if (a->linger_ns && l->deadline_ns < a->sender_wake_ns) {
            a->sender_wake_ns = l->deadline_ns;
            ring_ours = 1;   /* the sender learns of the nearer deadline */
        }
    }
    if (keep) {
        if (l->pending == NULL) {
            for (int32_t i = 0; i < l->count; i++)
                if (PyList_Append(spare, Py_None) < 0)
                    goto unlock_fail;
            l->pending = spare;
            spare = NULL;
        }
        if (PyList_Append(l->pending, item) < 0)
            goto unlock_fail;
    } else if (l->pending != NULL && PyList_Append(l->pending, Py_None) < 0)
        goto unlock_fail;
    if (l->count == 0)
        l->base_ts = l->max_ts = timestamp;
    int64_t ts_delta = timestamp - l->base_ts;   /* fits() checked it */
    uint8_t *end = write_record(l->batch + l->used, &r, ts_delta, l->count);
    l->used = (uint32_t)(end - l->batch);
    l->count++;
    if (timestamp > l->max_ts)
        l->max_ts = timestamp;
    a->queued++;
    int sealed_full = 0;
    if (l->used >= a->batch_size || a->linger_ns == 0) {
        if (seal_locked(a, l) == 0)
            sealed_full = 1;
        else
            PyErr_Clear();   /* queued: the sender seals it at linger.ms */
    }
    pthread_mutex_unlock(&l->lock);
    if (sealed_full && sticky)
        sticky_new_batch(a, t, partition);
    if ((ring_ours || (sealed_full && a->acks == 0)) && a->doorbell != NULL)   /* see seal_due */
        odk_doorbell_ring(a->doorbell);
    Py_INCREF(Py_None);
    result = Py_None;
    goto done;

unlock_fail:
    pthread_mutex_unlock(&l->lock);
done:
    rec_clear(&r);
    Py_XDECREF(item);
    Py_XDECREF(spare);
    return result;
}

/* ---- The Python side's calls --------------------------------------------------------------- */

static Link *link_arg(Accumulator *a, Py_ssize_t id)
{
    if (id < 0 || id >= a->nlinks || a->links[id] == NULL) {
        PyErr_Format(PyExc_ValueError, "no link %zd", id);
        return NULL;
    }
    return a->links[id];
}

static PyObject *Accumulator_set_partition_count(Accumulator *a, PyObject *args)
{
    PyObject *name;
    int count;
    if (!PyArg_ParseTuple(args, "Ui:set_partition_count", &name, &count))
        return NULL;
    if (count <= 0 || count > MAX_PARTITION)
        return PyErr_Format(PyExc_ValueError, "partition count %d out of range", count);
    Topic *t = topic_for(a, name);
    if (t == NULL)
        return NULL;
    t->count = count;
    Py_RETURN_NONE;
}

static PyObject *Accumulator_add_link(Accumulator *a, PyObject *args)
{
    PyObject *name, *owner;
    int partition;
    unsigned long long ring_addr;
    unsigned int limit;
    if (!PyArg_ParseTuple(args, "UiKOI:add_link", &name, &partition, &ring_addr, &owner, &limit))
        return NULL;
    if (partition < 0 || partition >= MAX_PARTITION || ring_addr == 0)
        return PyErr_Format(PyExc_ValueError, "bad partition %d or ring", partition);
    odk_ring *ring = (odk_ring *)(uintptr_t)ring_addr;
    if (limit > ring->capacity / 2 - ODK_RING_ENTRY_HEADER || limit <= ODK_BATCH_HEADER_SIZE)
        return PyErr_Format(PyExc_ValueError, "batch limit %u does not fit the ring", limit);
    Topic *t = topic_for(a, name);
    if (t == NULL)
        return NULL;
    if (link_of(t, partition) != NULL)
        return PyErr_Format(PyExc_ValueError, "%U-%d has a link already", name, partition);
    if (partition >= t->nlinks) {
        Link **grown = PyMem_Realloc(t->links, (size_t)(partition + 1) * sizeof *grown);
        if (grown == NULL)
            return PyErr_NoMemory();
        memset(grown + t->nlinks, 0, (size_t)(partition + 1 - t->nlinks) * sizeof *grown);
        t->links = grown;
        t->nlinks = partition + 1;
    }
    Link **all = PyMem_Realloc(a->links, (size_t)(a->nlinks + 1) * sizeof *all);
    if (all == NULL)
        return PyErr_NoMemory();
    a->links = all;
    Link *l = calloc(1, sizeof *l);
    if (l == NULL)
        return PyErr_NoMemory();
    pthread_mutex_init(&l->lock, NULL);
    l->topic = t;
    l->partition = partition;
    l->limit = limit;
    l->ring = ring;
    Py_INCREF(owner);
    l->owner = owner;
    t->links[partition] = l;
    a->links[a->nlinks] = l;
    return PyLong_FromSsize_t(a->nlinks++);
}

/* wait_space(link, nbytes, timeout_s): sleep (GIL released) until an entry of nbytes
 * fits in the link's ring, at most timeout_s and at most WAIT_CHUNK_NS (the caller
 * loops to its deadline, running signal handlers in between). True if it fits. */
static PyObject *Accumulator_wait_space(Accumulator *a, PyObject *args)
{
    Py_ssize_t id;
    unsigned int nbytes;
    double timeout;
    if (!PyArg_ParseTuple(args, "nId:wait_space", &id, &nbytes, &timeout))
        return NULL;
    Link *l = link_arg(a, id);
    if (l == NULL)
        return NULL;
    if (a->closed)
        Py_RETURN_FALSE;
    int64_t left = timeout <= 0 ? 0 : (int64_t)(timeout * 1e9);
    if (left > WAIT_CHUNK_NS)
        left = WAIT_CHUNK_NS;
    uint8_t *base = l->ring->base;
    uint64_t cap = l->ring->capacity, need = ODK_RING_ENTRY_HEADER + ((nbytes + 7u) & ~7ull);
    uint32_t *head_low = (uint32_t *)(base + ODK_RING_OFF_HEAD
                                      + (__BYTE_ORDER__ == __ORDER_BIG_ENDIAN__ ? 4 : 0));
    int ok = 0;
    atomic_fetch_add(&a->waiters, 1);
    Py_BEGIN_ALLOW_THREADS
    pthread_mutex_lock(&l->lock);
    uint64_t tail = l->ring->tail;
    if (l->sleepers++ == 0)
        odk_atomic_store_u32(base, ODK_RING_OFF_SPACE_WAITER, 1);
    pthread_mutex_unlock(&l->lock);
    uint64_t room = cap - (tail & (cap - 1));
    uint64_t span = need <= room ? need : room + need;
    atomic_thread_fence(memory_order_seq_cst);
    uint64_t h = odk_atomic_load_u64(base, ODK_RING_OFF_HEAD);
    ok = tail + span - h <= cap;
    if (!ok && left > 0) {
        odk_futex_wait(head_low, (uint32_t)h, left);
        h = odk_atomic_load_u64(base, ODK_RING_OFF_HEAD);
        ok = tail + span - h <= cap;
    }
    pthread_mutex_lock(&l->lock);
    if (--l->sleepers == 0)
        odk_atomic_store_u32(base, ODK_RING_OFF_SPACE_WAITER, 0);
    pthread_mutex_unlock(&l->lock);
    Py_END_ALLOW_THREADS
    atomic_fetch_sub(&a->waiters, 1);
    return PyBool_FromLong(ok);
}

/* seal_due(max_s): seal every batch whose linger.ms ran out; seconds until the next
 * deadline (at most max_s: the sender's wake-up). */
static PyObject *Accumulator_seal_due(Accumulator *a, PyObject *arg)
{
    double max_s = PyFloat_AsDouble(arg);
    if (max_s == -1.0 && PyErr_Occurred())
        return NULL;
    int64_t now = now_ns(CLOCK_MONOTONIC), next = now + (int64_t)(max_s * 1e9);
    int acked0 = 0;
    for (Py_ssize_t i = 0; i < a->nlinks; i++) {
        Link *l = a->links[i];
        int sealed = 0;
        pthread_mutex_lock(&l->lock);
        if (l->batch != NULL) {
            if (l->deadline_ns <= now) {
                if (seal_locked(a, l) == 0)
                    sealed = 1;
                else {
                    PyErr_Clear();
                    next = now + 1000000;   /* no memory now: again in a millisecond */
                }
            } else if (l->deadline_ns < next)
                next = l->deadline_ns;
        }
        pthread_mutex_unlock(&l->lock);
        if (sealed) {   /* keyless records move on to another partition (KIP-480) */
            sticky_new_batch(a, l->topic, l->partition);
            acked0 |= a->acks == 0;
        }
    }
    a->sender_wake_ns = next;
    if (acked0 && a->doorbell != NULL)
        odk_doorbell_ring(a->doorbell);
    return PyFloat_FromDouble((double)(next - now) / 1e9);
}

/* seal_all(): seal every open batch (flush). Never waits: each has its ring space. */
static PyObject *Accumulator_seal_all(Accumulator *a, PyObject *Py_UNUSED(ignored))
{
    int rc = 0;
    for (Py_ssize_t i = 0; i < a->nlinks && rc == 0; i++) {
        Link *l = a->links[i];
        pthread_mutex_lock(&l->lock);
        rc = seal_locked(a, l);
        pthread_mutex_unlock(&l->lock);
    }
    if (rc < 0)
        return NULL;
    if (a->acks == 0 && a->doorbell != NULL)
        odk_doorbell_ring(a->doorbell);
    Py_RETURN_NONE;
}

static PyObject *sealed_tuple(Sealed s)
{
    PyObject *pending = s.pending ? s.pending : Py_None;
    if (!s.pending)
        Py_INCREF(Py_None);
    return Py_BuildValue("(iN)", (int)s.count, pending);
}

/* complete(link, tag): (count, pending) of the sealed batch with that tag, removed from
 * the in-flight queue; None if there is none (a stray completion). */
static PyObject *Accumulator_complete(Accumulator *a, PyObject *args)
{
    Py_ssize_t id;
    unsigned int tag;
    if (!PyArg_ParseTuple(args, "nI:complete", &id, &tag))
        return NULL;
    Link *l = link_arg(a, id);
    if (l == NULL)
        return NULL;
    Sealed s = {0, 0, NULL};
    int found = 0;
    pthread_mutex_lock(&l->lock);
    for (size_t i = 0; i < l->in_len; i++) {
        size_t at = (l->in_first + i) % l->in_cap;
        if (l->inflight[at].tag != tag)
            continue;
        s = l->inflight[at];
        found = 1;
        for (size_t j = i; j > 0; j--)   /* close the gap (i is 0 when in order) */
            l->inflight[(l->in_first + j) % l->in_cap] = l->inflight[(l->in_first + j - 1) % l->in_cap];
        l->in_first = (l->in_first + 1) % l->in_cap;
        l->in_len--;
        break;
    }
    pthread_mutex_unlock(&l->lock);
    if (!found)
        Py_RETURN_NONE;
    return sealed_tuple(s);
}

/* take_sealed(link): [(count, pending), ...] of every sealed batch in flight, removed
 * (acks=0 reports, and the failures of close()). */
static PyObject *Accumulator_take_sealed(Accumulator *a, PyObject *arg)
{
    Py_ssize_t id = PyLong_AsSsize_t(arg);
    if (id == -1 && PyErr_Occurred())
        return NULL;
    Link *l = link_arg(a, id);
    if (l == NULL)
        return NULL;
    PyObject *out = PyList_New(0);
    if (out == NULL)
        return NULL;
    for (;;) {
        pthread_mutex_lock(&l->lock);
        if (l->in_len == 0) {
            pthread_mutex_unlock(&l->lock);
            return out;
        }
        Sealed s = l->inflight[l->in_first];
        l->in_first = (l->in_first + 1) % l->in_cap;
        l->in_len--;
        pthread_mutex_unlock(&l->lock);
        PyObject *t = sealed_tuple(s);
        if (t == NULL || PyList_Append(out, t) < 0) {
            Py_XDECREF(t);
            Py_DECREF(out);
            return NULL;
        }
        Py_DECREF(t);
    }
}

/* take_open(link): [(count, pending)] of the open batch, dropped (its reservation
 * cancelled: no reader ever sees it), or [] (close() reports such records failed). */
static PyObject *Accumulator_take_open(Accumulator *a, PyObject *arg)
{
    Py_ssize_t id = PyLong_AsSsize_t(arg);
    if (id == -1 && PyErr_Occurred())
        return NULL;
    Link *l = link_arg(a, id);
    if (l == NULL)
        return NULL;
    Sealed s = {0, 0, NULL};
    pthread_mutex_lock(&l->lock);
    if (l->batch != NULL) {
        odk_ring_cancel(l->ring);
        l->batch = NULL;
        s.count = l->count;
        s.pending = l->pending;
        l->pending = NULL;
    }
    pthread_mutex_unlock(&l->lock);
    if (s.count == 0) {
        Py_XDECREF(s.pending);
        return PyList_New(0);
    }
    PyObject *t = sealed_tuple(s);
    if (t == NULL)
        return NULL;
    return Py_BuildValue("[N]", t);
}

/* close(): no more produce(); returns once no wait_space is inside the rings, so the
 * Producer may unmap them (after take_sealed / take_open). */
static PyObject *Accumulator_close(Accumulator *a, PyObject *Py_UNUSED(ignored))
{
    a->closed = 1;
    Py_BEGIN_ALLOW_THREADS
    struct timespec ms = {0, 1000000};
    for (int i = 0; i < 1000 && atomic_load(&a->waiters) > 0; i++)   /* <= WAIT_CHUNK_NS */
        nanosleep(&ms, NULL);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

static PyObject *Accumulator_get_queued(Accumulator *a, void *Py_UNUSED(closure))
{
    return PyLong_FromLongLong(a->queued);
}

static int Accumulator_init(Accumulator *a, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"batch_size", "linger_ms", "acks", "producer_id", "producer_epoch",
                             "doorbell", "doorbell_owner", NULL};
    unsigned int batch_size;
    double linger_ms;
    int acks, epoch;
    long long pid;
    unsigned long long doorbell = 0;
    PyObject *owner = Py_None;
    if (a->topics != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Accumulator.__init__ called twice");
        return -1;
    }
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "IdiLi|KO:Accumulator", kwlist, &batch_size,
                                     &linger_ms, &acks, &pid, &epoch, &doorbell, &owner))
        return -1;
    if (batch_size == 0 || linger_ms < 0 || epoch < -32768 || epoch > 32767) {
        PyErr_SetString(PyExc_ValueError, "batch_size > 0, linger_ms >= 0, an int16 epoch");
        return -1;
    }
    a->topics = PyDict_New();
    if (a->topics == NULL)
        return -1;
    a->batch_size = batch_size;
    a->linger_ns = (int64_t)(linger_ms * 1e6);
    a->acks = acks;
    a->producer_id = pid;
    a->producer_epoch = (int16_t)epoch;
    a->doorbell = (uint8_t *)(uintptr_t)doorbell;
    Py_INCREF(owner);
    a->doorbell_owner = owner;
    a->sender_wake_ns = INT64_MAX;
    if (getrandom(&a->rng, sizeof a->rng, 0) != sizeof a->rng)
        a->rng = (uint64_t)now_ns(CLOCK_MONOTONIC);
    a->rng |= 1;
    return 0;
}

static void Accumulator_dealloc(Accumulator *a)
{
    for (Py_ssize_t i = 0; i < a->nlinks; i++) {
        Link *l = a->links[i];
        Py_XDECREF(l->pending);
        for (size_t j = 0; j < l->in_len; j++)
            Py_XDECREF(l->inflight[(l->in_first + j) % l->in_cap].pending);
        free(l->inflight);
        Py_XDECREF(l->owner);
        pthread_mutex_destroy(&l->lock);
        free(l);
    }
    PyMem_Free(a->links);
    for (Py_ssize_t i = 0; i < a->ntopics; i++) {
        Py_XDECREF(a->all_topics[i]->name);
        PyMem_Free(a->all_topics[i]->links);
        PyMem_Free(a->all_topics[i]);
    }
    PyMem_Free(a->all_topics);
    Py_XDECREF(a->topics);
    Py_XDECREF(a->doorbell_owner);
    Py_TYPE(a)->tp_free((PyObject *)a);
}

static PyMethodDef Accumulator_methods[] = {
    {"produce", (PyCFunction)(void (*)(void))Accumulator_produce, METH_FASTCALL | METH_KEYWORDS,
     "produce(topic, value=None, key=None, headers=None, partition=None, timestamp=None, "
     "on_delivery=None) -> None, or (code, partition, bytes, limit) for the slow path"},
    {"set_partition_count", (PyCFunction)Accumulator_set_partition_count, METH_VARARGS,
     "set_partition_count(topic, count)"},
    {"add_link", (PyCFunction)Accumulator_add_link, METH_VARARGS,
     "add_link(topic, partition, odk_ring address, ring owner, max batch bytes) -> link id"},
    {"wait_space", (PyCFunction)Accumulator_wait_space, METH_VARARGS,
     "wait_space(link, nbytes, timeout_s) -> bool (sleeps at most 50 ms, GIL released)"},
    {"seal_due", (PyCFunction)Accumulator_seal_due, METH_O,
     "seal_due(max_s) -> seconds until the next linger deadline"},
    {"seal_all", (PyCFunction)Accumulator_seal_all, METH_NOARGS, "seal every open batch"},
    {"complete", (PyCFunction)Accumulator_complete, METH_VARARGS,
     "complete(link, tag) -> (count, pending or None), or None"},
    {"take_sealed", (PyCFunction)Accumulator_take_sealed, METH_O,
     "take_sealed(link) -> [(count, pending or None), ...]"},
    {"take_open", (PyCFunction)Accumulator_take_open, METH_O,
     "take_open(link) -> [(count, pending or None)] of the open batch, dropped, or []"},
    {"close", (PyCFunction)Accumulator_close, METH_NOARGS, "no more produce(); waits out wait_space"},
    {NULL, NULL, 0, NULL}
};

static PyGetSetDef Accumulator_getset[] = {
    {"queued", (getter)Accumulator_get_queued, NULL, "records accepted by produce(), ever", NULL},
    {NULL, NULL, NULL, NULL, NULL}
};

static PyTypeObject AccumulatorType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "odradek._hotpath.Accumulator",
    .tp_basicsize = sizeof(Accumulator),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "The Producer's open batches, built in its produce rings (hp_producer.c).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Accumulator_init,
    .tp_dealloc = (destructor)Accumulator_dealloc,
    .tp_methods = Accumulator_methods,
    .tp_getset = Accumulator_getset,
};

/* ---- Module functions for the twin tests -------------------------------------------------- */

/* encode_batch(records, producer_id=-1, producer_epoch=-1, base_sequence=-1) -> bytes:
 * the batch the accumulator would seal for these (timestamp, key, value, headers)
 * records, through the same record and header code (BatchBuilder's twin). */
static PyObject *hp_encode_batch(PyObject *Py_UNUSED(m), PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"records", "producer_id", "producer_epoch", "base_sequence", NULL};
    PyObject *records;
    long long pid = -1;
    int epoch = -1, base_seq = -1;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!|Lii:encode_batch", kwlist, &PyList_Type,
                                     &records, &pid, &epoch, &base_seq))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(records);
    if (n == 0)
        return PyErr_Format(PyExc_ValueError, "cannot build a batch with no records");
    Rec *recs = PyMem_Calloc((size_t)n, sizeof *recs);
    if (recs == NULL)
        return PyErr_NoMemory();
    PyObject *out = NULL;
    Py_ssize_t done = 0;
    uint64_t size = ODK_BATCH_HEADER_SIZE;
    int64_t base_ts = 0, max_ts = 0;
    for (; done < n; done++) {
        PyObject *t = PyList_GET_ITEM(records, done);
        if (!PyTuple_Check(t) || PyTuple_GET_SIZE(t) != 4) {
            PyErr_SetString(PyExc_TypeError, "records are (timestamp, key, value, headers) tuples");
            goto fail;
        }
        int64_t ts;
        if (timestamp_of(PyTuple_GET_ITEM(t, 0), &ts) < 0
            || rec_set(&recs[done], PyTuple_GET_ITEM(t, 1), PyTuple_GET_ITEM(t, 2),
                       PyTuple_GET_ITEM(t, 3), 0) < 0)
            goto fail;
        recs[done].timestamp = ts;
        if (done == 0)
            base_ts = max_ts = ts;
        int64_t d;
        if (__builtin_sub_overflow(ts, base_ts, &d)) {
            done++;
            PyErr_SetString(PyExc_ValueError, "the timestamp delta must fit in int64");
            goto fail;
        }
        if (ts > max_ts)
            max_ts = ts;
        size += rec_size(&recs[done], d, (int32_t)done);
    }
    if (size > 0x7fffffff) {
        PyErr_SetString(PyExc_ValueError, "batch too large");
        goto fail;
    }
    out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)size);
    if (out == NULL)
        goto fail;
    uint8_t *b = (uint8_t *)PyBytes_AS_STRING(out), *p = b + ODK_BATCH_HEADER_SIZE;
    for (Py_ssize_t i = 0; i < n; i++)
        p = write_record(p, &recs[i], recs[i].timestamp - base_ts, (int32_t)i);
    fill_header(b, (uint32_t)size, (int32_t)n, base_ts, max_ts, pid, (int16_t)epoch, base_seq);
fail:
    for (Py_ssize_t i = 0; i < done; i++)
        rec_clear(&recs[i]);
    PyMem_Free(recs);
    return out;
}

static PyObject *hp_partition_for_key(PyObject *Py_UNUSED(m), PyObject *args)
{
    Py_buffer key;
    int n;
    if (!PyArg_ParseTuple(args, "y*i:partition_for_key", &key, &n))
        return NULL;
    if (n <= 0) {
        PyBuffer_Release(&key);
        return PyErr_Format(PyExc_ValueError, "num_partitions must be positive, not %d", n);
    }
    uint32_t h = murmur2(key.buf, (size_t)key.len);
    PyBuffer_Release(&key);
    return PyLong_FromLong((long)((h & 0x7fffffffu) % (uint32_t)n));
}

static PyMethodDef producer_functions[] = {
    {"encode_batch", (PyCFunction)(void (*)(void))hp_encode_batch, METH_VARARGS | METH_KEYWORDS,
     "encode_batch(records, producer_id=-1, producer_epoch=-1, base_sequence=-1) -> bytes"},
    {"partition_for_key", hp_partition_for_key, METH_VARARGS,
     "partition_for_key(key, n): toPositive(murmur2(key)) % n"},
    {NULL, NULL, 0, NULL}
};

int odk_hp_add_producer(PyObject *module)
{
    if (PyType_Ready(&AccumulatorType) < 0)
        return -1;
    Py_INCREF(&AccumulatorType);
    if (PyModule_AddObject(module, "Accumulator", (PyObject *)&AccumulatorType) < 0) {
        Py_DECREF(&AccumulatorType);
        return -1;
    }
    if (PyModule_AddFunctions(module, producer_functions) < 0
        || PyModule_AddIntConstant(module, "PRODUCE_NEED_COUNT", PRODUCE_NEED_COUNT) < 0
        || PyModule_AddIntConstant(module, "PRODUCE_NEED_LINK", PRODUCE_NEED_LINK) < 0
        || PyModule_AddIntConstant(module, "PRODUCE_FULL", PRODUCE_FULL) < 0
        || PyModule_AddIntConstant(module, "PRODUCE_TOO_LARGE", PRODUCE_TOO_LARGE) < 0)
        return -1;
    return 0;
}
