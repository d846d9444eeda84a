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
 * The record's bytes and the batch header come from hp_record.h (with the twin tests'
 * module functions, encode_batch and partition_for_key); the structs, the sticky
 * partitioner and opening/sealing a batch from hp_accumulator.h; the batches in flight
 * and their reports (collect, take_sealed, take_open) from hp_completions.h.
 *
 * Per record (Accumulator.produce, METH_FASTCALL, confluent-kafka's argument order):
 *   argument checks (bytes, str as UTF-8, bytearray/memoryview as their bytes, None;
 *   anything else TypeError naming the argument, before anything changes), the
 *   timestamp (now, ms, when None or 0), the partition (explicit; toPositive(murmur2(key)) %
 *   count for keyed records, exactly client/partitioner.py; keyless records stick to a
 *   partition until its batch is sealed, KIP-480), the record's encoding (zigzag
 *   varints, as client/records/_builder.py's BatchBuilder writes it: byte-identical,
 *   tests/client/test_hotpath_producer.py), sealing when batch.size is reached or
 *   linger.ms is 0. Returns None, or for what it cannot do a tuple (code, partition,
 *   bytes, limit) for the Python slow path (client/producer.py): PRODUCE_NEED_COUNT
 *   (the topic's partition count is unknown), PRODUCE_NEED_LINK (the partition has no
 *   rings yet), PRODUCE_FULL (the ring lacks `bytes` of room: wait_space, retry),
 *   PRODUCE_TOO_LARGE (the record's batch would exceed `limit`), PRODUCE_NEED_TXN (a
 *   transactional accumulator's partition is not in the open transaction: the Producer
 *   adds it with AddPartitionsToTxn, then txn_add(link), or refuses the record when no
 *   transaction is open). With any of these the record is not queued (a batch sealed on
 *   the way stays sealed: it was complete).
 *
 * Transactions (KIP-98): Accumulator(..., transactional=True) sets isTransactional in
 *   every batch's attributes and gates each link on its in_txn flag: txn_add(link) opens
 *   it once the partition is in the transaction, txn_clear() closes every link when the
 *   transaction ends (commit or abort begins, or an abortable error), so that a record
 *   produced outside a transaction never reaches a ring. The gate is one int read on the
 *   path a record takes anyway; set_producer(id, epoch) gives the id InitProducerId
 *   returned, before any link exists.
 *
 * Completion bookkeeping: per sealed batch (tag, record count, and only when some
 *   record of it has on_delivery, the "pending" list: for each such record, in order,
 *   the (index in the batch, callback, key, value, headers, timestamp) tuple its
 *   delivery report needs). No Python object is kept, and nothing is done, for a record
 *   without a callback (a batch of 600 records with one callback reports one).
 *
 * Threading and locks
 *   - Each link has its own mutex (per partition, never per producer), held only while
 *     its open batch, cursors or in-flight queue change, never across a call that can
 *     block (the ring commit's futex wake does not block), and never while Python code
 *     can run: every container a record needs is made before the lock is taken, and
 *     released after (allocating a tracked object can run the garbage collector, hence
 *     finalizers; under the lock only an int and a list's growth are allocated, which
 *     cannot).
 *   - produce() (any thread), seal_due() and collect() (the sender thread), seal_all()
 *     (flush) all hold the GIL; wait_space() releases it while it sleeps on the ring's
 *     head futex (taking the link mutex only to read the cursor and set the waiter flag).
 *     So under the GIL these calls run one at a time whatever the partition: today the
 *     mutex is what a wait_space (GIL released) and its partition's other calls contend
 *     on; no call ever waits for another partition's.
 *   - The topic table (topics, partition counts, links, sticky partitions) changes only
 *     with the GIL held, from the calls above and set_partition_count / add_link.
 *   - The rings' memory belongs to the Python Ring objects (the cffi odk_ring struct and
 *     the mapping); each link keeps a reference to its Ring (and to its completion Ring,
 *     which collect() reads), and close() waits for every
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
    PRODUCE_TOO_LARGE = 4,
    PRODUCE_NEED_TXN = 5
};

#define MAX_SEQUENCE 0x7fffffffu   /* records.MAX_SEQUENCE: sequences wrap to 0 after it */
#define NO_SEQUENCE (-1)
#define WAIT_CHUNK_NS 50000000LL   /* wait_space returns at least this often: signals */
#define MAX_PARTITION 1000000      /* links are kept in an array indexed by partition */

#include "hp_record.h"

#include "hp_accumulator.h"   /* the structs and the core: opening and sealing batches */

/* ---- produce() --------------------------------------------------------------------------- */

/* Accumulator.produce's argument order, which is also the order of the core's argv and of
 * the Producer's _produce_slow(res, *argv) */
static const char *const produce_kwlist[] = {"topic", "value", "key", "headers", "partition",
                                             "timestamp", "on_delivery"};
static const int produce_order[] = {0, 1, 2, 3, 4, 5, 6};
/* Producer.produce's (confluent-kafka's) order, and where each lands in argv */
static const char *const confluent_kwlist[] = {"topic", "value", "key", "partition", "on_delivery",
                                               "timestamp", "headers"};
static const int confluent_order[] = {0, 1, 2, 4, 6, 5, 3};
#define PRODUCE_NARGS 7

/* Fills out[] (the core's order) from a vectorcall's arguments named by kwlist; `order`
 * maps each kwlist position to its argv slot. */
static int parse_produce_args(PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
                              const char *const *kwlist, const int *order, PyObject **out)
{
    if (nargs > PRODUCE_NARGS) {
        PyErr_Format(PyExc_TypeError, "produce() takes at most %d arguments (%zd given)",
                     PRODUCE_NARGS, nargs);
        return -1;
    }
    for (int i = 0; i < PRODUCE_NARGS; i++)
        out[order[i]] = i < nargs ? args[i] : Py_None;
    int given = (1 << nargs) - 1;
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    for (Py_ssize_t j = 0; j < nkw; j++) {
        PyObject *name = PyTuple_GET_ITEM(kwnames, j);
        int k = 0;
        while (k < PRODUCE_NARGS && PyUnicode_CompareWithASCIIString(name, kwlist[k]) != 0)
            k++;
        if (k == PRODUCE_NARGS) {
            PyErr_Format(PyExc_TypeError, "produce() got an unexpected keyword argument '%U'", name);
            return -1;
        }
        if (given & (1 << k)) {
            PyErr_Format(PyExc_TypeError, "produce() got multiple values for argument '%s'", kwlist[k]);
            return -1;
        }
        given |= 1 << k;
        out[order[k]] = args[nargs + j];
    }
    if (!(given & 1)) {
        PyErr_SetString(PyExc_TypeError, "produce() missing required argument 'topic'");
        return -1;
    }
    return 0;
}

/* The record of argv (produce_kwlist's order) into its batch: None, or the slow path's
 * tuple. */
static PyObject *produce_core(Accumulator *a, PyObject *const *argv)
{
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
    if (timestamp == 0)          /* librdkafka's rule, as Producer.produce's: 0 is now */
        timestamp = now_ns(CLOCK_REALTIME) / 1000000;
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
        /* (index in the batch, callback, key, value, headers, timestamp): the index is set
         * under the lock, in this tuple nobody else has seen yet */
        item = Py_BuildValue("(OOOONL)", Py_None, callback, r.key.obj ? r.key.obj : Py_None,
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
    if (l == NULL || !txn_ready(a, l)) {
        result = slow(l == NULL ? PRODUCE_NEED_LINK : PRODUCE_NEED_TXN, partition, 0, 0);
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
            if (l == NULL || !txn_ready(a, l)) {
                result = slow(l == NULL ? PRODUCE_NEED_LINK : PRODUCE_NEED_TXN, partition, 0, 0);
                goto done;
            }
            if (alone > l->limit) {
                result = slow(PRODUCE_TOO_LARGE, partition, alone, l->limit);
                goto done;
            }
            pthread_mutex_lock(&l->lock);
            if (l->batch != NULL && !fits(a, l, &r)) {
                if (seal_locked(a, l) < 0)
                    goto unlock_fail;
                ring_ours |= a->acks == 0;   /* its reports are due at once too */
            }
        }
    }
    if (l->batch == NULL) {
        uint32_t want;
        int rc = open_locked(a, l, alone, &want);
        if (rc < 0) {
            pthread_mutex_unlock(&l->lock);
            PyErr_Format(PyExc_SystemError, "odradek: the ring of partition %d already has a reservation "
                         "open (a second writer in this process?)", (int)partition);
            goto done;
        }
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
    if (keep) {   /* an int and a list's growth: no object the collector tracks */
        PyObject *index = PyLong_FromLong(l->count);
        if (index == NULL)
            goto unlock_fail;
        PyTuple_SET_ITEM(item, 0, index);
        Py_DECREF(Py_None);   /* the placeholder's reference */
        if (l->pending == NULL) {
            l->pending = spare;
            spare = NULL;
        }
        if (PyList_Append(l->pending, item) < 0)
            goto unlock_fail;
    }
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

static PyObject *Accumulator_produce(Accumulator *a, PyObject *const *args, Py_ssize_t nargs,
                                     PyObject *kwnames)
{
    PyObject *argv[PRODUCE_NARGS];
    if (parse_produce_args(args, nargs, kwnames, produce_kwlist, produce_order, argv) < 0)
        return NULL;
    return produce_core(a, argv);
}

/* The Producer's produce() as one C call (bind_produce): confluent-kafka's argument order;
 * what the core cannot do goes to slow(res, *argv), the Producer's _produce_slow, whose
 * result is returned. Its self is the tuple (accumulator, slow). */
static PyObject *bound_produce(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                               PyObject *kwnames)
{
    PyObject *argv[1 + PRODUCE_NARGS];   /* argv[0]: the slow path's first argument */
    if (parse_produce_args(args, nargs, kwnames, confluent_kwlist, confluent_order, argv + 1) < 0)
        return NULL;
    PyObject *res = produce_core((Accumulator *)PyTuple_GET_ITEM(self, 0), argv + 1);
    if (res == NULL || res == Py_None)
        return res;
    argv[0] = res;
    PyObject *out = PyObject_Vectorcall(PyTuple_GET_ITEM(self, 1), argv, 1 + PRODUCE_NARGS, NULL);
    Py_DECREF(res);
    return out;
}

static PyMethodDef bound_produce_def = {
    "produce", (PyCFunction)(void (*)(void))bound_produce, METH_FASTCALL | METH_KEYWORDS,
    "produce(topic, value=None, key=None, partition=None, on_delivery=None, timestamp=None, headers=None)\\n"
    "Queue one record (odradek.client.Producer.produce, as one C call)."
};

/* bind_produce(slow) -> the Producer's produce(): see bound_produce. */
static PyObject *Accumulator_bind_produce(Accumulator *a, PyObject *slow)
{
    if (!PyCallable_Check(slow))
        return PyErr_Format(PyExc_TypeError, "bind_produce needs a callable, not %.100s", Py_TYPE(slow)->tp_name);
    PyObject *self = PyTuple_Pack(2, (PyObject *)a, slow);
    if (self == NULL)
        return NULL;
    PyObject *fn = PyCFunction_New(&bound_produce_def, self);
    Py_DECREF(self);
    return fn;
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

static Link *link_of_arg(Accumulator *a, PyObject *arg)
{
    Py_ssize_t id = PyLong_AsSsize_t(arg);
    if (id == -1 && PyErr_Occurred())
        return NULL;
    return link_arg(a, id);
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
    int next_seq = 0;
    unsigned long long completions_addr = 0;
    PyObject *completions_owner = Py_None;
    if (!PyArg_ParseTuple(args, "UiKOI|iKO:add_link", &name, &partition, &ring_addr, &owner, &limit,
                          &next_seq, &completions_addr, &completions_owner))
        return NULL;
    if (partition < 0 || partition >= MAX_PARTITION || ring_addr == 0 || next_seq < 0)
        return PyErr_Format(PyExc_ValueError, "bad partition %d, ring or sequence", partition);
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
    l->next_seq = next_seq;
    Py_INCREF(owner);
    l->owner = owner;
    l->completions = (odk_ring *)(uintptr_t)completions_addr;
    Py_INCREF(completions_owner);
    l->completions_owner = completions_owner;
    t->links[partition] = l;
    a->links[a->nlinks] = l;
    return PyLong_FromSsize_t(a->nlinks++);
}

/* wait_space(link, nbytes, timeout_s): sleep (GIL released) until an entry of nbytes
 * fits in the link's ring, at most timeout_s and at most WAIT_CHUNK_NS (the caller
 * loops to its deadline, running signal handlers in between). True if it fits.
 *
 * First it polls, for up to SPACE_POLL_NS, sleeping SPACE_POLL_STEP_NS between looks and
 * setting no flag; only then does it set the ring's space-waiter flag and sleep on the
 * head futex. A producer ahead of its leader waits here once per batch: with the flag
 * set, the leader would wake it (a futex wake, on a VM an inter-processor interrupt)
 * for every entry it releases, in the leader's time, the bottleneck then. Polling costs
 * the waiting producer's own timer wake-ups instead, and the full ring in front of the
 * leader (many batches) keeps it busy meanwhile. A ring that stays full past the poll
 * (a leader stuck or gone) costs no wake-ups: the futex sleep. */
#define SPACE_POLL_NS 2000000LL
#define SPACE_POLL_STEP_NS 100000L
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
    int ok;
    atomic_fetch_add(&a->waiters, 1);
    Py_BEGIN_ALLOW_THREADS
    pthread_mutex_lock(&l->lock);
    uint64_t tail = l->ring->tail;
    pthread_mutex_unlock(&l->lock);
    int64_t start = now_ns(CLOCK_MONOTONIC), spent = 0;
    struct timespec step = {0, SPACE_POLL_STEP_NS};
    while ((ok = odk_ring_wait_writable_at(l->ring, tail, nbytes, 0)) == 0 && spent < SPACE_POLL_NS
           && spent < left) {
        nanosleep(&step, NULL);
        spent = now_ns(CLOCK_MONOTONIC) - start;
    }
    if (ok == 0 && spent < left) {
        pthread_mutex_lock(&l->lock);
        if (l->sleepers++ == 0)     /* the flag is shared by this process's sleepers */
            odk_atomic_store_u32(base, ODK_RING_OFF_SPACE_WAITER, 1);
        pthread_mutex_unlock(&l->lock);
        ok = odk_ring_wait_writable_at(l->ring, tail, nbytes, left - spent);
        pthread_mutex_lock(&l->lock);
        if (--l->sleepers == 0)
            odk_atomic_store_u32(base, ODK_RING_OFF_SPACE_WAITER, 0);
        pthread_mutex_unlock(&l->lock);
    }
    Py_END_ALLOW_THREADS
    atomic_fetch_sub(&a->waiters, 1);
    if (ok < 0)
        return PyErr_Format(PyExc_ValueError, "wait_space: an entry of %u bytes never fits the ring", nbytes);
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

#include "hp_completions.h"   /* collect, take_sealed, take_open */

/* close(): no more produce(); returns once no wait_space is inside the rings (which
 * leave within WAIT_CHUNK_NS; it gives up after about 1 s), so the Producer may unmap
 * them (after take_sealed / take_open). */
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

/* set_producer(id, epoch): the producer id and epoch of every batch, before any link. */
static PyObject *Accumulator_set_producer(Accumulator *a, PyObject *args)
{
    long long pid;
    int epoch;
    if (!PyArg_ParseTuple(args, "Li:set_producer", &pid, &epoch))
        return NULL;
    if (epoch < -32768 || epoch > 32767)
        return PyErr_Format(PyExc_ValueError, "producer epoch %d is not an int16", epoch);
    if (a->nlinks > 0)
        return PyErr_Format(PyExc_ValueError, "set_producer() after a link was added: its sequences are "
                            "the producer's");
    a->producer_id = pid;
    a->producer_epoch = (int16_t)epoch;
    Py_RETURN_NONE;
}

/* txn_add(link): the link's partition is in the open transaction; its records go through. */
static PyObject *Accumulator_txn_add(Accumulator *a, PyObject *arg)
{
    Link *l = link_of_arg(a, arg);
    if (l == NULL)
        return NULL;
    if (a->producer_id < 0)
        return PyErr_Format(PyExc_ValueError, "a transactional batch needs a producer id: set_producer() first");
    l->in_txn = 1;
    Py_RETURN_NONE;
}

/* txn_clear(): no link is in a transaction any more (records get PRODUCE_NEED_TXN). */
static PyObject *Accumulator_txn_clear(Accumulator *a, PyObject *Py_UNUSED(ignored))
{
    for (Py_ssize_t i = 0; i < a->nlinks; i++)
        a->links[i]->in_txn = 0;
    Py_RETURN_NONE;
}

static PyObject *Accumulator_get_queued(Accumulator *a, void *Py_UNUSED(closure))
{
    return PyLong_FromLongLong(a->queued);
}

static PyObject *Accumulator_get_settled(Accumulator *a, void *Py_UNUSED(closure))
{
    return PyLong_FromLongLong(a->settled);
}

static int Accumulator_init(Accumulator *a, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"batch_size", "linger_ms", "acks", "producer_id", "producer_epoch",
                             "doorbell", "doorbell_owner", "transactional", NULL};
    unsigned int batch_size;
    double linger_ms;
    int acks, epoch, transactional = 0;
    long long pid;
    unsigned long long doorbell = 0;
    PyObject *owner = Py_None;
    if (a->topics != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Accumulator.__init__ called twice");
        return -1;
    }
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "IdiLi|KOp:Accumulator", kwlist, &batch_size,
                                     &linger_ms, &acks, &pid, &epoch, &doorbell, &owner, &transactional))
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
    a->attributes = transactional ? ODK_ATTR_TRANSACTIONAL_MASK : 0;
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
        Py_XDECREF(l->completions_owner);
        pthread_mutex_destroy(&l->lock);
        free(l);
    }
    PyMem_Free(a->links);
    Py_XDECREF(a->topics);          /* its capsules free the Topics */
    Py_XDECREF(a->doorbell_owner);
    Py_TYPE(a)->tp_free((PyObject *)a);
}

static PyMethodDef Accumulator_methods[] = {
    {"produce", (PyCFunction)(void (*)(void))Accumulator_produce, METH_FASTCALL | METH_KEYWORDS,
     "produce(topic, value=None, key=None, headers=None, partition=None, timestamp=None, "
     "on_delivery=None) -> None, or (code, partition, bytes, limit) for the slow path"},
    {"bind_produce", (PyCFunction)Accumulator_bind_produce, METH_O,
     "bind_produce(slow) -> produce(topic, value=None, key=None, partition=None, on_delivery=None, "
     "timestamp=None, headers=None), one C call; slow(res, topic, value, key, headers, partition, "
     "timestamp, on_delivery) serves what produce's tuple asks for"},
    {"set_partition_count", (PyCFunction)Accumulator_set_partition_count, METH_VARARGS,
     "set_partition_count(topic, count)"},
    {"add_link", (PyCFunction)Accumulator_add_link, METH_VARARGS,
     "add_link(topic, partition, odk_ring address, ring owner, max batch bytes, next_sequence=0, "
     "completion odk_ring address=0, its owner=None) -> link id"},
    {"wait_space", (PyCFunction)Accumulator_wait_space, METH_VARARGS,
     "wait_space(link, nbytes, timeout_s) -> bool (polls up to 2 ms, then sleeps; at most 50 ms, GIL released)"},
    {"seal_due", (PyCFunction)Accumulator_seal_due, METH_O,
     "seal_due(max_s) -> seconds until the next linger deadline"},
    {"seal_all", (PyCFunction)Accumulator_seal_all, METH_NOARGS, "seal every open batch"},
    {"collect", (PyCFunction)Accumulator_collect, METH_NOARGS,
     "collect() -> (doorbell seen, [(link, count, pending or None, base offset, error code)], "
     "[(link, stray tag)], None or (link, corrupt message)): the sender's round (see settled)"},
    {"take_sealed", (PyCFunction)Accumulator_take_sealed, METH_O,
     "take_sealed(link) -> [(count, pending or None), ...]"},
    {"take_open", (PyCFunction)Accumulator_take_open, METH_O,
     "take_open(link) -> [(count, pending or None)] of the open batch, dropped, or []"},
    {"close", (PyCFunction)Accumulator_close, METH_NOARGS, "no more produce(); waits out wait_space"},
    {"set_producer", (PyCFunction)Accumulator_set_producer, METH_VARARGS,
     "set_producer(producer_id, producer_epoch), before any link"},
    {"txn_add", (PyCFunction)Accumulator_txn_add, METH_O, "txn_add(link): its partition is in the transaction"},
    {"txn_clear", (PyCFunction)Accumulator_txn_clear, METH_NOARGS, "txn_clear(): no partition is"},
    {NULL, NULL, 0, NULL}
};

static PyGetSetDef Accumulator_getset[] = {
    {"queued", (getter)Accumulator_get_queued, NULL, "records accepted by produce(), ever", NULL},
    {"settled", (getter)Accumulator_get_settled, NULL,
     "records of batches collect() found done (acknowledged, or sealed with acks=0) that needed no report, ever",
     NULL},
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

static PyMethodDef producer_functions[] = {
    {"encode_batch", (PyCFunction)(void (*)(void))hp_encode_batch, METH_VARARGS | METH_KEYWORDS,
     "encode_batch(records, producer_id=-1, producer_epoch=-1, base_sequence=-1, transactional=False) -> bytes"},
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
        || PyModule_AddIntConstant(module, "PRODUCE_TOO_LARGE", PRODUCE_TOO_LARGE) < 0
        || PyModule_AddIntConstant(module, "PRODUCE_NEED_TXN", PRODUCE_NEED_TXN) < 0)
        return -1;
    return 0;
}
