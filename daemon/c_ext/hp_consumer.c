/* odradek._hotpath, the consumer's part (see hotpath.h): the Record type, and
 * decode_fetch, which turns a whole fetch (a buffer of v2 batches read in place from a
 * mapped segment) into Records in one call.
 *
 * Record
 *   The record object of odradek.client (client/message.py exports it), with
 *   confluent-kafka's Message methods, so that a confluent-kafka program reads it
 *   unchanged: topic(), partition(), offset(), key(), value(), headers() (None when the
 *   record has none), timestamp() -> (timestamp type, ms) with confluent's type values
 *   (1 CreateTime, 2 LogAppendTime), error() (None: a failed delivery's record is
 *   client/message.py's FailedDelivery subclass), latency() and leader_epoch() (None),
 *   len(record) (the value's size), set_topic/set_key/set_value/set_headers. The
 *   constructor Record(topic, partition, offset, key, value, headers, timestamp,
 *   timestamp_type=1), == comparing all eight fields (no hash), a repr and pickling. A GC
 *   container (headers is a list, and the setters take any object). Calls with seven or
 *   eight positional arguments take a vectorcall path (the producer's delivery reports);
 *   other calls and subclasses go through tp_new and tp_init as a Python class would.
 *   Eight fields, no more: a ninth (the error) made every object of a fetch a pymalloc
 *   size class larger and decode_fetch ~7% slower. A method call costs a little more
 *   than the slot read of the attribute API it replaced (perf/consumer_perf.py).
 *
 * decode_fetch(data, start, pos, next_offset, high_watermark, topic, partition,
 *              check_crcs, zero_copy[, aborted, known_upto])
 *     -> (records, status, position, next_offset, a, b, c)
 *   Walks data[start:] batch by batch with exactly the checks and outcomes of the
 *   consumer's Python loop it replaces (client/consumer.py _decode, which drives it
 *   and keeps the error paths): the framing of iter_batches (a batchLength of at least
 *   49 whose bytes fit), then in this order the CRC-32C (when check_crcs), magic,
 *   lastOffsetDelta and recordsCount, a batch at or above the high watermark (the end
 *   of the fetch), the baseOffset order (not below the previous batch's next offset, nor
 *   below 0 for the first; not wholly before pos; below the high watermark). Control
 *   batches are skipped (never the application's, in either isolation level). With
 *   `aborted` and `known_upto` (read_committed: the caller passes the last stable offset
 *   as high_watermark), a transactional data batch of an aborted transaction is skipped
 *   too: `aborted` is bytes of native int64 triples (producer id, first offset, marker
 *   offset), and a batch of that producer with its baseOffset in [first, marker] is
 *   aborted (Kafka's abort ranges, opened at the first offset, closed by the ABORT
 *   marker); they are complete for batches below known_upto. The records of an uncompressed batch are decoded by
 *   odk_decode_records (record_decode.c, the one record decoder) and made into Records here,
 *   skipping offsets below pos; headers become a list of (str, bytes or None), or None
 *   when the record has none.
 *   It stops at the first batch it does not deliver and says why (status, position =
 *   the batch's byte in data, and a, b, c):
 *     FETCH_END                  every byte of data was read (position = len(data))
 *     FETCH_ABOVE_HIGH_WATERMARK the batch at position starts at or above the high
 *                                watermark: the fetch ends quietly there
 *     FETCH_BAD_LENGTH           the framing stops at position before the end
 *     FETCH_BAD_CRC              the batch at position fails its CRC-32C
 *     FETCH_BAD_HEADER           its magic, lastOffsetDelta, recordsCount are (a, b, c)
 *     FETCH_BAD_BASE_OFFSET      its baseOffset (a) is out of place
 *     FETCH_IN_PYTHON            the batch at position passed the header checks but its
 *                                records are for Python: compressed (every codec is
 *                                decoded there), or records that
 *                                odk_decode_records refuses or a header key that is not
 *                                UTF-8 (Python raises the error with its words).
 *                                next_offset is already past it; continue at position
 *                                + its size with that next_offset.
 *     FETCH_NEED_ABORTED         (read_committed) the batch at position is transactional
 *                                and at or above known_upto (a = its baseOffset): call
 *                                again from position with the aborted transactions from
 *                                there up to the last stable offset.
 *   records holds the Records of every batch before position. next_offset: the offset
 *   after the last batch passed (the value given, if none). `start` is 0 at the fetch's
 *   first byte, else where the previous call stopped (a batch was passed before it:
 *   the baseOffset order then starts from next_offset).
 *
 * Zero-copy (zero_copy true): key and value are BytesViews (hp_bytes_view.c) of data's
 *   bytes, not bytes copies. One buffer export per fetch: the call's own memoryview of
 *   `data` (a view of the mapped segment, sharing its managed buffer), which every view
 *   of the fetch holds, so the views pin the mapping as a memoryview does: mmap.close()
 *   raises BufferError while one exists (client/_partition_read.py MappedSegment.close
 *   takes that as "the map goes with the last view"), and reading one never touches
 *   unmapped memory. A BytesView is neither a GC container nor tracked, so a zero-copy
 *   Record without headers is not tracked either.
 *
 * Invariants: every byte read is inside data (positions come from checked batchLength
 * and from odk_decode_records, whose rows lie inside their batch); offsets and
 * timestamps are computed without signed overflow (high_watermark is at most
 * INT64_MAX - 2^32, so base offsets below it leave room for a delta; a timestamp sum
 * that would overflow is made by Python's int addition). Reference counts: every path
 * out releases what it took; on an exception (MemoryError) nothing is returned.
 * Threading: called with the GIL held, which it keeps (no waits, no syscalls: the bytes
 * are in memory); nothing static is written after module init.
 */
#include "hotpath.h"
#include "odradek.h"

#include <stddef.h>
#include <string.h>

/* ---- Record ------------------------------------------------------------------------- */

enum { F_TOPIC, F_PARTITION, F_OFFSET, F_KEY, F_VALUE, F_HEADERS, F_TIMESTAMP, F_TIMESTAMP_TYPE,
       N_FIELDS };

static char *field_names[] = {"topic", "partition", "offset", "key", "value", "headers", "timestamp",
                              "timestamp_type", NULL};

/* f[i] NULL reads as None (a Record made by Record.__new__ alone). */
typedef struct {
    PyObject_HEAD
    PyObject *f[N_FIELDS];
} RecordObject;

static PyTypeObject RecordType;
static PyObject *create_time;       /* TIMESTAMP_CREATE_TIME, 1 (confluent-kafka's value) */
static PyObject *log_append_time;   /* TIMESTAMP_LOG_APPEND_TIME, 2 */

static int record_traverse(RecordObject *self, visitproc visit, void *arg)
{
    for (int i = 0; i < N_FIELDS; i++)
        Py_VISIT(self->f[i]);
    return 0;
}

static int record_clear(RecordObject *self)
{
    for (int i = 0; i < N_FIELDS; i++)
        Py_CLEAR(self->f[i]);
    return 0;
}

/* Records freed, for reuse (a fetch makes and frees a thousand at a time; a reused one
 * also skips the allocation count that starts a garbage collection): untracked, fields
 * cleared, chained through f[0]. Only exact Records; touched with the GIL held only. */
#define FREE_RECORDS_MAX 4096
static RecordObject *free_records;
static int n_free_records;

/* A new Record, untracked, every field NULL; NULL with MemoryError. */
static RecordObject *record_alloc(void)
{
    RecordObject *r = free_records;
    if (r == NULL) {
        r = PyObject_GC_New(RecordObject, &RecordType);
        if (r != NULL)
            memset(r->f, 0, sizeof r->f);
        return r;
    }
    free_records = (RecordObject *)r->f[0];
    n_free_records--;
    r->f[0] = NULL;
    PyObject_Init((PyObject *)r, &RecordType);
    return r;
}

static void record_dealloc(RecordObject *self)
{
    PyObject_GC_UnTrack(self);
    record_clear(self);
    if (Py_TYPE(self) == &RecordType && n_free_records < FREE_RECORDS_MAX) {
        self->f[0] = (PyObject *)free_records;
        free_records = self;
        n_free_records++;
        return;
    }
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int record_init(RecordObject *self, PyObject *args, PyObject *kwds)
{
    PyObject *v[N_FIELDS] = {NULL};
    v[F_TIMESTAMP_TYPE] = create_time;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOOOOOO|O:Record", field_names, &v[0], &v[1], &v[2],
                                     &v[3], &v[4], &v[5], &v[6], &v[7]))
        return -1;
    for (int i = 0; i < N_FIELDS; i++)
        Py_XSETREF(self->f[i], Py_NewRef(v[i]));
    if (!PyObject_GC_IsTracked((PyObject *)self))
        PyObject_GC_Track(self);     /* one decode_fetch made: its fields may be containers now */
    return 0;
}

/* Record(...) with 7 or 8 positional arguments: no argument tuple, no parsing. Anything
 * else (keywords, a subclass) is what type.__call__ does: tp_new, then tp_init. */
static PyObject *record_vectorcall(PyObject *type, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Py_ssize_t n = PyVectorcall_NARGS(nargsf);
    if (kwnames == NULL && n >= F_TIMESTAMP_TYPE && n <= N_FIELDS && type == (PyObject *)&RecordType) {
        RecordObject *r = record_alloc();
        if (r == NULL)
            return NULL;
        for (Py_ssize_t i = 0; i < n; i++)
            r->f[i] = Py_NewRef(args[i]);
        if (n == F_TIMESTAMP_TYPE)
            r->f[F_TIMESTAMP_TYPE] = Py_NewRef(create_time);
        PyObject_GC_Track(r);
        return (PyObject *)r;
    }
    Py_ssize_t nkw = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    PyObject *tuple = PyTuple_New(n), *kwds = NULL, *obj = NULL;
    if (tuple == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < n; i++)
        PyTuple_SET_ITEM(tuple, i, Py_NewRef(args[i]));
    if (nkw) {
        kwds = PyDict_New();
        if (kwds == NULL)
            goto done;
        for (Py_ssize_t i = 0; i < nkw; i++)
            if (PyDict_SetItem(kwds, PyTuple_GET_ITEM(kwnames, i), args[n + i]) < 0)
                goto done;
    }
    PyTypeObject *tp = (PyTypeObject *)type;
    obj = tp->tp_new(tp, tuple, kwds);
    if (obj != NULL && PyObject_TypeCheck(obj, tp) && Py_TYPE(obj)->tp_init(obj, tuple, kwds) < 0)
        Py_CLEAR(obj);
done:
    Py_DECREF(tuple);
    Py_XDECREF(kwds);
    return obj;
}

/* The field (borrowed; None for NULL). */
static inline PyObject *field(RecordObject *self, int i)
{
    return self->f[i] == NULL ? Py_None : self->f[i];
}

/* ---- confluent-kafka's Message methods: each a METH_NOARGS read of one field ---------- */

#define FIELD_GETTER(fname, idx)                                                          \
    static PyObject *record_##fname(RecordObject *self, PyObject *Py_UNUSED(ignored))     \
    {                                                                                     \
        return Py_NewRef(field(self, idx));                                               \
    }
FIELD_GETTER(topic, F_TOPIC)
FIELD_GETTER(partition, F_PARTITION)
FIELD_GETTER(offset, F_OFFSET)
FIELD_GETTER(key, F_KEY)
FIELD_GETTER(value, F_VALUE)
FIELD_GETTER(headers, F_HEADERS)

#undef FIELD_GETTER

static PyObject *record_none(PyObject *Py_UNUSED(self), PyObject *Py_UNUSED(ignored))
{
    Py_RETURN_NONE;
}

static PyObject *record_timestamp(RecordObject *self, PyObject *Py_UNUSED(ignored))
{
    return PyTuple_Pack(2, field(self, F_TIMESTAMP_TYPE), field(self, F_TIMESTAMP));
}

/* set_key(v) etc.: any object (confluent-kafka checks nothing either); from then on the
 * Record may hold a container, so the collector tracks it (as after __init__). */
static PyObject *record_set(RecordObject *self, int i, PyObject *v)
{
    Py_XSETREF(self->f[i], Py_NewRef(v));
    if (!PyObject_GC_IsTracked((PyObject *)self))
        PyObject_GC_Track(self);
    Py_RETURN_NONE;
}

#define FIELD_SETTER(fname, idx)                                                          \
    static PyObject *record_set_##fname(RecordObject *self, PyObject *v)                  \
    {                                                                                     \
        return record_set(self, idx, v);                                                  \
    }
FIELD_SETTER(topic, F_TOPIC)
FIELD_SETTER(key, F_KEY)
FIELD_SETTER(value, F_VALUE)
FIELD_SETTER(headers, F_HEADERS)
#undef FIELD_SETTER

/* len(record): the value's size in bytes (0 for None), as len(Message). */
static Py_ssize_t record_len(RecordObject *self)
{
    PyObject *v = field(self, F_VALUE);
    return v == Py_None ? 0 : PyObject_Length(v);
}

/* A Record is true whatever its value's length (a record is not a container). */
static int record_bool(PyObject *Py_UNUSED(self))
{
    return 1;
}

/* client/message.py's _short: repr of the first 32 bytes, "..." when there are more. */
static PyObject *short_repr(PyObject *b)
{
    if (b == Py_None)
        return PyUnicode_FromString("None");
    PyObject *head = PySequence_GetSlice(b, 0, 32), *bytes = NULL, *r = NULL;
    if (head == NULL)
        return NULL;
    Py_ssize_t n = PyObject_Length(b);
    if (n >= 0 && (bytes = PyBytes_FromObject(head)) != NULL)
        r = PyObject_Repr(bytes);
    Py_DECREF(head);
    Py_XDECREF(bytes);
    if (r != NULL && n > 32)
        Py_SETREF(r, PyUnicode_FromFormat("%U...", r));
    return r;
}

static PyObject *record_repr(RecordObject *self)
{
    PyObject *key = short_repr(field(self, F_KEY)), *value = NULL, *r = NULL;
    if (key != NULL && (value = short_repr(field(self, F_VALUE))) != NULL)
        r = PyUnicode_FromFormat("Record(%S-%S@%S, key=%U, value=%U, timestamp=%S)", field(self, F_TOPIC),
                                 field(self, F_PARTITION), field(self, F_OFFSET), key, value,
                                 field(self, F_TIMESTAMP));
    Py_XDECREF(key);
    Py_XDECREF(value);
    return r;
}

/* Equal when every field is (==, no identity shortcut, as the Python class compared). */
static PyObject *record_richcompare(PyObject *a, PyObject *b, int op)
{
    if ((op != Py_EQ && op != Py_NE) || !PyObject_TypeCheck(a, &RecordType) ||
        !PyObject_TypeCheck(b, &RecordType))
        Py_RETURN_NOTIMPLEMENTED;
    for (int i = 0; i < N_FIELDS; i++) {
        PyObject *eq = PyObject_RichCompare(field((RecordObject *)a, i), field((RecordObject *)b, i), Py_EQ);
        if (eq == NULL)
            return NULL;
        int t = PyObject_IsTrue(eq);
        Py_DECREF(eq);
        if (t < 0)
            return NULL;
        if (!t)
            return PyBool_FromLong(op == Py_NE);
    }
    return PyBool_FromLong(op == Py_EQ);
}

static PyObject *record_reduce(RecordObject *self, PyObject *Py_UNUSED(ignored))
{
    PyObject *args = PyTuple_New(N_FIELDS);
    if (args == NULL)
        return NULL;
    for (int i = 0; i < N_FIELDS; i++)
        PyTuple_SET_ITEM(args, i, Py_NewRef(field(self, i)));
    return Py_BuildValue("(ON)", (PyObject *)Py_TYPE(self), args);
}

static PyMethodDef record_methods[] = {
    {"topic", (PyCFunction)record_topic, METH_NOARGS, "The topic's name."},
    {"partition", (PyCFunction)record_partition, METH_NOARGS, "The partition number."},
    {"offset", (PyCFunction)record_offset, METH_NOARGS,
     "The offset (-1 in a delivery report of a failed record or of one sent with acks=0)."},
    {"key", (PyCFunction)record_key, METH_NOARGS, "The key: bytes, a BytesView (zero.copy) or None."},
    {"value", (PyCFunction)record_value, METH_NOARGS, "The value: bytes, a BytesView (zero.copy) or None."},
    {"headers", (PyCFunction)record_headers, METH_NOARGS,
     "A list of (str, bytes or None) pairs, or None when the record has none."},
    {"timestamp", (PyCFunction)record_timestamp, METH_NOARGS,
     "(timestamp type, ms): TIMESTAMP_CREATE_TIME (1) or TIMESTAMP_LOG_APPEND_TIME (2)."},
    {"error", (PyCFunction)record_none, METH_NOARGS,
     "None: a record (a failed delivery's is a FailedDelivery, whose error() is its KafkaError)."},
    {"latency", (PyCFunction)record_none, METH_NOARGS, "None: not measured."},
    {"leader_epoch", (PyCFunction)record_none, METH_NOARGS, "None: not carried."},
    {"set_topic", (PyCFunction)record_set_topic, METH_O, "Set the topic."},
    {"set_key", (PyCFunction)record_set_key, METH_O, "Set the key."},
    {"set_value", (PyCFunction)record_set_value, METH_O, "Set the value."},
    {"set_headers", (PyCFunction)record_set_headers, METH_O, "Set the headers."},
    {"__reduce__", (PyCFunction)record_reduce, METH_NOARGS, "Pickled as Record(*its eight fields)."},
    {NULL, NULL, 0, NULL},
};

static PySequenceMethods record_as_sequence = {.sq_length = (lenfunc)record_len};
static PyNumberMethods record_as_number = {.nb_bool = record_bool};

PyDoc_STRVAR(record_doc,
"Record(topic, partition, offset, key, value, headers, timestamp, timestamp_type=1)\n"
"--\n\n"
"One record of a partition: what a Consumer returns and a delivery report carries, with\n"
"confluent-kafka's Message methods: topic(), partition(), offset(), key(), value(),\n"
"headers(), timestamp() -> (timestamp type, ms), error(), latency(), leader_epoch(),\n"
"len(record) (the value's size), set_topic/set_key/set_value/set_headers.\n"
"key and value: bytes or None (read-only BytesViews with the consumer's zero.copy);\n"
"headers: a list of (str, bytes or None), or None; timestamp type 1 CreateTime,\n"
"2 LogAppendTime. == compares all eight fields; not hashable; always true.");

static PyTypeObject RecordType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "odradek.client.message.Record",
    .tp_basicsize = sizeof(RecordObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_doc = record_doc,
    .tp_dealloc = (destructor)record_dealloc,
    .tp_traverse = (traverseproc)record_traverse,
    .tp_clear = (inquiry)record_clear,
    .tp_repr = (reprfunc)record_repr,
    .tp_richcompare = record_richcompare,
    .tp_hash = PyObject_HashNotImplemented,
    .tp_as_sequence = &record_as_sequence,
    .tp_as_number = &record_as_number,
    .tp_methods = record_methods,
    .tp_init = (initproc)record_init,
    .tp_new = PyType_GenericNew,
    .tp_vectorcall = record_vectorcall,
};

/* ---- decode_fetch ------------------------------------------------------------------- */

enum { FETCH_END, FETCH_ABOVE_HIGH_WATERMARK, FETCH_BAD_LENGTH, FETCH_BAD_CRC, FETCH_BAD_HEADER,
       FETCH_BAD_BASE_OFFSET, FETCH_IN_PYTHON, FETCH_NEED_ABORTED };

#define ATTR_TRANSACTIONAL_MASK 16   /* a transactional batch (client/records/layout.py) */

/* read_committed: the aborted transactions known, as (producer id, first offset, marker
 * offset) triples of native int64, valid for batches below known_upto. */
typedef struct {
    const int64_t *ranges;
    Py_ssize_t n;
    int64_t known_upto;
} aborted_set;

/* 1: the transactional batch of producer_id at base_offset belongs to an aborted
 * transaction (Kafka's abort ranges: opened at its first offset, closed by its marker) */
static int is_aborted(const aborted_set *ab, int64_t producer_id, int64_t base_offset)
{
    for (Py_ssize_t i = 0; i < ab->n; i++) {
        const int64_t *r = ab->ranges + 3 * i;
        if (r[0] == producer_id && r[1] <= base_offset && base_offset <= r[2])
            return 1;
    }
    return 0;
}

/* base offsets below the high watermark leave room for any lastOffsetDelta + 1 */
#define MAX_HIGH_WATERMARK (INT64_MAX - ((int64_t)1 << 32))

/* The `count` headers at batch[pos] (lengths checked by odk_decode_records) as a list of
 * (str, bytes or None): the C twin of client/records/_batch.py _read_headers. NULL with an
 * exception; *refused set when it is about the bytes (a key that is not UTF-8; lengths that
 * do not fit, which the decoder rules out): the caller hands such a batch to Python. */
static PyObject *read_headers(const uint8_t *batch, size_t pos, size_t end, int64_t count, int *refused)
{
    PyObject *list = PyList_New((Py_ssize_t)count);
    if (list == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < (Py_ssize_t)count; i++) {
        int64_t klen, vlen;
        if (odk_read_varint(batch, &pos, end, 5, &klen) != 0 || klen < 0 || (uint64_t)klen > end - pos)
            goto bad;
        PyObject *key = PyUnicode_DecodeUTF8((const char *)batch + pos, (Py_ssize_t)klen, NULL);
        if (key == NULL) {
            *refused = PyErr_ExceptionMatches(PyExc_UnicodeDecodeError);
            goto fail;
        }
        pos += (size_t)klen;
        PyObject *value;
        if (odk_read_varint(batch, &pos, end, 5, &vlen) != 0 || vlen < -1 ||
            (vlen > 0 && (uint64_t)vlen > end - pos)) {
            Py_DECREF(key);
            goto bad;
        }
        if (vlen < 0) {
            value = Py_NewRef(Py_None);
        } else {
            value = PyBytes_FromStringAndSize((const char *)batch + pos, (Py_ssize_t)vlen);
            pos += (size_t)vlen;
        }
        PyObject *pair = value == NULL ? NULL : PyTuple_Pack(2, key, value);
        Py_DECREF(key);
        Py_XDECREF(value);
        if (pair == NULL)
            goto fail;
        PyList_SET_ITEM(list, i, pair);
    }
    return list;
bad:
    PyErr_SetString(PyExc_ValueError, "header lengths do not fit the record");
    *refused = 1;
fail:
    Py_DECREF(list);
    return NULL;
}

/* What one call works with. */
typedef struct {
    PyObject *base;          /* memoryview of data: the one export; zero-copy views share it */
    const uint8_t *buf;
    PyObject *topic, *partition;
    int zero_copy;
    int64_t pos;             /* the fetch position: offsets below it are skipped */
    int64_t *rows;           /* odk_decode_records' rows, grown as batches need */
    size_t rows_cap;
    int64_t ts_value;        /* the last timestamp made, and its int, shared by records */
    PyObject *ts;
} fetch_ctx;

/* key or value bytes at buf[at:at+len] (len -1: None) */
static PyObject *field_bytes(fetch_ctx *cx, size_t at, int64_t len)
{
    if (len < 0)
        return Py_NewRef(Py_None);
    if (!cx->zero_copy)
        return PyBytes_FromStringAndSize((const char *)cx->buf + at, (Py_ssize_t)len);
    return odk_hp_bytes_view(cx->base, (const char *)cx->buf + at, (Py_ssize_t)len);
}

static PyObject *timestamp_of(fetch_ctx *cx, int64_t base, int64_t delta)
{
    int64_t t;
    if (__builtin_add_overflow(base, delta, &t)) {    /* Python's int has no limit */
        PyObject *a = PyLong_FromLongLong(base), *b = PyLong_FromLongLong(delta), *sum = NULL;
        if (a != NULL && b != NULL)
            sum = PyNumber_Add(a, b);
        Py_XDECREF(a);
        Py_XDECREF(b);
        return sum;
    }
    if (cx->ts == NULL || cx->ts_value != t) {
        PyObject *obj = PyLong_FromLongLong(t);
        if (obj == NULL)
            return NULL;
        Py_XSETREF(cx->ts, obj);
        cx->ts_value = t;
    }
    return Py_NewRef(cx->ts);
}

/* Records of the uncompressed batch at buf[at:at+size] with offsets >= pos, appended to
 * out. 0; 1 when the batch is for Python (refused by the decoder, a header it cannot
 * read), with nothing appended; -1 with an exception. */
static int decode_batch(fetch_ctx *cx, size_t at, size_t size, const odk_batch_header *h, PyObject *out)
{
    const uint8_t *b = cx->buf + at;
    int64_t most = (int64_t)(size - ODK_BATCH_HEADER_SIZE) / 7;   /* as odk_decode_records bounds it */
    size_t cap = (size_t)(h->records_count < most ? h->records_count : most);
    if (cap > cx->rows_cap) {
        int64_t *rows = PyMem_Realloc(cx->rows, cap * ODK_RECORD_FIELDS * sizeof(int64_t));
        if (rows == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        cx->rows = rows;
        cx->rows_cap = cap;
    }
    odk_decode_result res;
    if (odk_decode_records(b, size, cx->rows, cap, &res) != 0)
        return 1;
    Py_ssize_t mark = PyList_GET_SIZE(out);
    int append_time = (h->attributes & ODK_ATTR_TIMESTAMP_TYPE_MASK) != 0;
    PyObject *ts_type = append_time ? log_append_time : create_time;
    int64_t skip = cx->pos - h->base_offset;    /* records whose offsetDelta is below it are before pos */
    int refused = 0;
    for (int64_t i = 0; i < res.records; i++) {
        const int64_t *row = cx->rows + i * ODK_RECORD_FIELDS;
        if (row[ODK_REC_OFFSET_DELTA] < skip) {
            /* before pos: not delivered, but its header keys are checked all the same, so
             * that a batch is refused or not whatever the position (as records() does) */
            PyObject *unused = row[ODK_REC_HEADERS_COUNT] == 0 ? NULL :
                read_headers(b, (size_t)row[ODK_REC_HEADERS_POS], size, row[ODK_REC_HEADERS_COUNT], &refused);
            if (unused == NULL && PyErr_Occurred())
                goto fail;
            Py_XDECREF(unused);
            continue;
        }
        RecordObject *r = record_alloc();
        if (r == NULL)
            goto fail;
        int64_t hc = row[ODK_REC_HEADERS_COUNT];
        if ((r->f[F_OFFSET] = PyLong_FromLongLong(h->base_offset + row[ODK_REC_OFFSET_DELTA])) == NULL ||
            (r->f[F_KEY] = field_bytes(cx, at + (size_t)row[ODK_REC_KEY_POS], row[ODK_REC_KEY_LEN])) == NULL ||
            (r->f[F_VALUE] = field_bytes(cx, at + (size_t)row[ODK_REC_VALUE_POS], row[ODK_REC_VALUE_LEN])) == NULL ||
            (r->f[F_HEADERS] = hc == 0 ? Py_NewRef(Py_None)
                                        : read_headers(b, (size_t)row[ODK_REC_HEADERS_POS], size, hc,
                                                       &refused)) == NULL ||
            (r->f[F_TIMESTAMP] = append_time ? timestamp_of(cx, h->max_timestamp, 0)
                                             : timestamp_of(cx, h->base_timestamp,
                                                            row[ODK_REC_TIMESTAMP_DELTA])) == NULL) {
            Py_DECREF(r);
            goto fail;
        }
        r->f[F_TOPIC] = Py_NewRef(cx->topic);
        r->f[F_PARTITION] = Py_NewRef(cx->partition);
        r->f[F_TIMESTAMP_TYPE] = Py_NewRef(ts_type);
        if (hc)
            PyObject_GC_Track(r);     /* a list of headers: a container */
        int appended = PyList_Append(out, (PyObject *)r);
        Py_DECREF(r);
        if (appended < 0)
            goto fail;
    }
    return 0;
fail:
    if (!refused)
        return -1;          /* the caller drops `out` */
    PyErr_Clear();          /* a header key that is not UTF-8: Python names it */
    return PyList_SetSlice(out, mark, PyList_GET_SIZE(out), NULL) < 0 ? -1 : 1;
}

static int arg_int64(PyObject *o, const char *name, int64_t *out)
{
    if (!PyLong_Check(o)) {
        PyErr_Format(PyExc_TypeError, "decode_fetch: %s must be an int, not %.100s", name, Py_TYPE(o)->tp_name);
        return -1;
    }
    long long v = PyLong_AsLongLong(o);
    if (v == -1 && PyErr_Occurred())
        return -1;
    *out = v;
    return 0;
}

static PyObject *decode_fetch(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 9 && nargs != 11) {
        PyErr_Format(PyExc_TypeError, "decode_fetch takes 9 or 11 arguments (data, start, pos, next_offset, "
                     "high_watermark, topic, partition, check_crcs, zero_copy[, aborted, known_upto]), "
                     "%zd given", nargs);
        return NULL;
    }
    aborted_set ab = {NULL, 0, 0};
    Py_buffer ranges = {0};
    int committed = nargs == 11;
    if (committed) {
        if (arg_int64(args[10], "known_upto", &ab.known_upto) < 0)
            return NULL;
        if (!PyBytes_Check(args[9])) {
            PyErr_Format(PyExc_TypeError, "decode_fetch: aborted must be bytes, not %.100s",
                         Py_TYPE(args[9])->tp_name);
            return NULL;
        }
        if (PyBytes_GET_SIZE(args[9]) % (3 * (Py_ssize_t)sizeof(int64_t))) {
            PyErr_Format(PyExc_ValueError, "decode_fetch: aborted holds %zd bytes, not whole (producer id, "
                         "first offset, last offset) int64 triples", PyBytes_GET_SIZE(args[9]));
            return NULL;
        }
        if (PyObject_GetBuffer(args[9], &ranges, PyBUF_SIMPLE) < 0)
            return NULL;
        ab.n = ranges.len / (3 * (Py_ssize_t)sizeof(int64_t));
    }
    int64_t start, pos, next_offset, hw;
    if (arg_int64(args[1], "start", &start) < 0 || arg_int64(args[2], "pos", &pos) < 0 ||
        arg_int64(args[3], "next_offset", &next_offset) < 0 || arg_int64(args[4], "high_watermark", &hw) < 0)
        goto fail;
    if (!PyUnicode_Check(args[5]) || !PyLong_Check(args[6])) {
        PyErr_SetString(PyExc_TypeError, "decode_fetch: topic must be a str and partition an int");
        goto fail;
    }
    int check_crcs = PyObject_IsTrue(args[7]), zero_copy = PyObject_IsTrue(args[8]);
    if (check_crcs < 0 || zero_copy < 0)
        goto fail;
    if (pos < 0 || next_offset < pos || hw < 0 || hw > MAX_HIGH_WATERMARK) {
        PyErr_Format(PyExc_ValueError, "decode_fetch: offsets out of range (pos %lld, next_offset %lld, "
                     "high_watermark %lld)", (long long)pos, (long long)next_offset, (long long)hw);
        goto fail;
    }
    PyObject *base = odk_hp_byte_buffer(args[0], "decode_fetch");
    if (base == NULL)
        goto fail;
    Py_buffer *view = PyMemoryView_GET_BUFFER(base);
    int64_t n = view->len;
    if (start < 0 || start > n) {
        Py_DECREF(base);
        PyErr_Format(PyExc_ValueError, "decode_fetch: start %lld is outside the %lld bytes of data",
                     (long long)start, (long long)n);
        goto fail;
    }
    ab.ranges = ranges.buf;
    fetch_ctx cx = {.base = base, .buf = view->buf, .topic = args[5], .partition = args[6],
                    .zero_copy = zero_copy, .pos = pos};
    PyObject *out = PyList_New(0), *result = NULL;
    if (out == NULL)
        goto done;
    int status = FETCH_END;
    int64_t at = start, a = 0, b = 0, c = 0;
    for (;;) {
        if (n - at < ODK_BATCH_HEADER_SIZE) {   /* no room for a batch: where iter_batches stops */
            status = at < n ? FETCH_BAD_LENGTH : FETCH_END;
            break;
        }
        odk_batch_header h;
        odk_read_batch_header(cx.buf + at, &h);
        if (h.batch_length < ODK_BATCH_HEADER_SIZE - ODK_BATCH_OVERHEAD ||
            h.batch_length > n - at - ODK_BATCH_OVERHEAD) {
            status = FETCH_BAD_LENGTH;
            break;
        }
        size_t size = (size_t)h.batch_length + ODK_BATCH_OVERHEAD;
        if (check_crcs && odk_batch_crc(cx.buf + at, size) != h.crc) {
            status = FETCH_BAD_CRC;
            break;
        }
        if (h.magic != 2 || h.last_offset_delta < 0 || h.records_count < 0 ||
            (int64_t)h.records_count > (int64_t)h.last_offset_delta + 1) {
            status = FETCH_BAD_HEADER;
            a = h.magic, b = h.last_offset_delta, c = h.records_count;
            break;
        }
        if (h.base_offset >= hw && h.base_offset >= next_offset) {
            status = FETCH_ABOVE_HIGH_WATERMARK;
            break;
        }
        if (h.base_offset < (at > 0 ? next_offset : 0) || h.base_offset < pos - h.last_offset_delta ||
            h.base_offset >= hw) {
            status = FETCH_BAD_BASE_OFFSET;
            a = h.base_offset;
            break;
        }
        if (committed && (h.attributes & (ATTR_TRANSACTIONAL_MASK | ODK_ATTR_CONTROL_MASK)) ==
                ATTR_TRANSACTIONAL_MASK) {
            if (h.base_offset >= ab.known_upto) {
                status = FETCH_NEED_ABORTED;
                a = h.base_offset;
                break;
            }
            if (is_aborted(&ab, h.producer_id, h.base_offset)) {
                next_offset = h.base_offset + h.last_offset_delta + 1;
                at += (int64_t)size;
                continue;
            }
        }
        next_offset = h.base_offset + h.last_offset_delta + 1;
        if (h.attributes & ODK_ATTR_CONTROL_MASK) {   /* markers: never the application's */
            at += (int64_t)size;
            continue;
        }
        int r = h.attributes & ODK_ATTR_COMPRESSION_MASK ? 1 : decode_batch(&cx, (size_t)at, size, &h, out);
        if (r < 0)
            goto done;
        if (r > 0) {
            status = FETCH_IN_PYTHON;
            break;
        }
        at += (int64_t)size;
    }
    result = Py_BuildValue("(OiLLLLL)", out, status, (long long)at, (long long)next_offset, (long long)a,
                           (long long)b, (long long)c);
done:
    Py_XDECREF(out);
    Py_XDECREF(cx.ts);
    PyMem_Free(cx.rows);
    Py_DECREF(base);
    if (committed)
        PyBuffer_Release(&ranges);
    return result;
fail:
    if (committed)
        PyBuffer_Release(&ranges);
    return NULL;
}

PyDoc_STRVAR(decode_fetch_doc,
"decode_fetch(data, start, pos, next_offset, high_watermark, topic, partition, check_crcs, zero_copy\n"
"             [, aborted, known_upto])\n"
"--\n\n"
"The Records of the whole v2 batches in data[start:] with offsets >= pos, and where and why it\n"
"stopped: (records, status, position, next_offset, a, b, c). See daemon/c_ext/hp_consumer.c.");

static PyMethodDef consumer_functions[] = {
    {"decode_fetch", (PyCFunction)(void (*)(void))decode_fetch, METH_FASTCALL, decode_fetch_doc},
    {NULL, NULL, 0, NULL},
};

int odk_hp_add_consumer(PyObject *module)
{
    create_time = PyLong_FromLong(1);
    log_append_time = PyLong_FromLong(2);
    if (create_time == NULL || log_append_time == NULL || PyType_Ready(&RecordType) < 0)
        return -1;
    if (PyModule_AddObject(module, "Record", Py_NewRef(&RecordType)) < 0) {
        Py_DECREF(&RecordType);
        return -1;
    }
    static const struct { const char *name; int value; } codes[] = {
        {"FETCH_END", FETCH_END}, {"FETCH_ABOVE_HIGH_WATERMARK", FETCH_ABOVE_HIGH_WATERMARK},
        {"FETCH_BAD_LENGTH", FETCH_BAD_LENGTH}, {"FETCH_BAD_CRC", FETCH_BAD_CRC},
        {"FETCH_BAD_HEADER", FETCH_BAD_HEADER}, {"FETCH_BAD_BASE_OFFSET", FETCH_BAD_BASE_OFFSET},
        {"FETCH_IN_PYTHON", FETCH_IN_PYTHON}, {"FETCH_NEED_ABORTED", FETCH_NEED_ABORTED},
    };
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++)
        if (PyModule_AddIntConstant(module, codes[i].name, codes[i].value) < 0)
            return -1;
    return PyModule_AddFunctions(module, consumer_functions);
}
