/* Record encoding for the Producer's accumulator (included by hp_producer.c only).
 *
 * One record's arguments converted to bytes (Rec: key, value, headers; rec_set), its
 * size in a batch (rec_size), its bytes (write_record: zigzag varints, exactly what
 * client/records/_builder.py's BatchBuilder writes), and the v2 header with its CRC-32C
 * (fill_header, from the ODK_BATCH_OFF_* offsets of odradek.h). Also the module
 * functions the twin tests call: encode_batch (a whole batch through this code, to
 * compare with BatchBuilder) and partition_for_key (murmur2, to compare with
 * client/partitioner.py).
 *
 * Ownership: a Rec holds new references (and buffer exports) until rec_clear; nothing
 * here keeps state between calls. Every function runs with the GIL held.
 */
#ifndef ODRADEK_HP_RECORD_H
#define ODRADEK_HP_RECORD_H

#include "hotpath.h"
#include "odradek.h"
#include "byte_order.h"

#include <stdint.h>
#include <string.h>
#include <time.h>

/* ---- Byte helpers -------------------------------------------------------------------- */

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

/* A null field that holds nothing (field_clear is a no-op); `view` is set only when held. */
static inline void field_init(Field *f)
{
    f->p = NULL;
    f->n = -1;
    f->obj = NULL;
    f->held = 0;
}

/* Fill f (field_init'ed) from o. keep: the delivery report needs a bytes object (f->obj). */
static int field_set(Field *f, PyObject *o, const char *what, int keep)
{
    if (o == Py_None)
        return 0;
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
    /* not a memset of the whole Rec: its two Py_buffers are written only when held */
    field_init(&r->key);
    field_init(&r->value);
    r->headers = NULL;
    r->nheaders = 0;
    r->timestamp = 0;
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

/* The v2 header of a batch of `size` bytes at b (records already in place), and its CRC.
 * attributes: 0, or ODK_ATTR_TRANSACTIONAL_MASK for a transactional producer's batch. */
static void fill_header(uint8_t *b, uint32_t size, int32_t count, int64_t base_ts, int64_t max_ts,
                        int64_t producer_id, int16_t producer_epoch, int32_t base_seq, uint16_t attributes)
{
    store_be64(b + ODK_BATCH_OFF_BASE_OFFSET, 0);
    store_be32(b + ODK_BATCH_OFF_LENGTH, size - ODK_BATCH_OVERHEAD);
    store_be32(b + ODK_BATCH_OFF_LEADER_EPOCH, (uint32_t)-1);
    b[ODK_BATCH_OFF_MAGIC] = 2;
    store_be16(b + ODK_BATCH_OFF_ATTRIBUTES, attributes);
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

/* ---- Module functions for the twin tests -------------------------------------------------- */

/* encode_batch(records, producer_id=-1, producer_epoch=-1, base_sequence=-1) -> bytes:
 * the batch the accumulator would seal for these (timestamp, key, value, headers)
 * records, through the same record and header code (BatchBuilder's twin). */
static PyObject *hp_encode_batch(PyObject *Py_UNUSED(m), PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"records", "producer_id", "producer_epoch", "base_sequence", "transactional",
                             NULL};
    PyObject *records;
    long long pid = -1;
    int epoch = -1, base_seq = -1, transactional = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!|Liip:encode_batch", kwlist, &PyList_Type,
                                     &records, &pid, &epoch, &base_seq, &transactional))
        return NULL;
    if (transactional && pid < 0)
        return PyErr_Format(PyExc_ValueError, "a transactional batch needs a producer id (got %lld)", pid);
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
    fill_header(b, (uint32_t)size, (int32_t)n, base_ts, max_ts, pid, (int16_t)epoch, base_seq,
                transactional ? ODK_ATTR_TRANSACTIONAL_MASK : 0);
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

#endif
