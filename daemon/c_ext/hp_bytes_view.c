/* odradek._hotpath.BytesView: the key or value of a zero-copy Record (see hotpath.h).
 *
 * A read-only view of len bytes at buf inside the buffer of `owner`, a memoryview this
 * module made and never hands out (so nothing can release it while a view lives). The
 * consumer's decode_fetch makes one owner per fetch (a memoryview of the mapped segment)
 * and one BytesView per key and value: an object of 32 bytes that the garbage collector
 * does not track (it holds only its owner, which cannot refer back to it), where a
 * memoryview per field cost as much as copying 1 KiB, and the collector's traversals of
 * them another ~15% (perf/consumer_perf.py --zero-copy).
 *
 * What a user relies on, as with the read-only memoryview it replaces: the buffer
 * protocol (memoryview(v), bytes(v), v.tobytes(), anything that takes a bytes-like
 * object; writable buffers refused: BufferError), len(v), v[i] (an int), v[i:j] (a
 * BytesView of the same owner for a step of 1, else a read-only memoryview), iteration
 * over the ints, comparisons and hash like bytes (v == b"..." and hash(v) ==
 * hash(bytes(v)), so a view finds a bytes key of a dict). Not picklable, as a memoryview.
 * Lifetime: the owner keeps the exporter's buffer (the segment's mapping) for as long as
 * a view of it lives; what the consumer promises about its bytes is in client/consumer.py.
 *
 * BytesView(obj) makes one of any C-contiguous bytes-like object (the consumer's gzip
 * batches, whose keys and values are views of the decompressed bytes).
 */
#include "hotpath.h"

#include <string.h>

typedef struct {
    PyObject_HEAD
    PyObject *owner;        /* a private memoryview whose buffer holds [buf, buf + len) */
    const char *buf;
    Py_ssize_t len;
} BytesViewObject;

static PyTypeObject BytesViewType;

PyObject *odk_hp_byte_buffer(PyObject *obj, const char *who)
{
    PyObject *mv = PyMemoryView_FromObject(obj);
    if (mv == NULL)
        return NULL;
    Py_buffer *v = PyMemoryView_GET_BUFFER(mv);
    if (v->ndim != 1 || v->itemsize != 1 || v->suboffsets != NULL || (v->strides != NULL && v->strides[0] != 1) ||
        (v->format != NULL && strcmp(v->format, "B") && strcmp(v->format, "b") && strcmp(v->format, "c"))) {
        Py_DECREF(mv);
        PyErr_Format(PyExc_ValueError, "%s: data must be a contiguous buffer of bytes", who);
        return NULL;
    }
    return mv;
}

/* Views freed, for reuse (a fetch makes and frees a thousand at a time): chained through
 * `owner`. Touched with the GIL held only. */
#define FREE_VIEWS_MAX 4096
static BytesViewObject *free_views;
static int n_free_views;

PyObject *odk_hp_bytes_view(PyObject *owner, const char *buf, Py_ssize_t len)
{
    BytesViewObject *v = free_views;
    if (v != NULL) {
        free_views = (BytesViewObject *)v->owner;
        n_free_views--;
        PyObject_Init((PyObject *)v, &BytesViewType);
    } else if ((v = PyObject_New(BytesViewObject, &BytesViewType)) == NULL) {
        return NULL;
    }
    v->owner = Py_NewRef(owner);
    v->buf = buf;
    v->len = len;
    return (PyObject *)v;
}

static PyObject *bv_new(PyTypeObject *Py_UNUSED(type), PyObject *args, PyObject *kwds)
{
    PyObject *obj;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O:BytesView", (char *[]){"data", NULL}, &obj))
        return NULL;
    PyObject *owner = odk_hp_byte_buffer(obj, "BytesView");
    if (owner == NULL)
        return NULL;
    Py_buffer *b = PyMemoryView_GET_BUFFER(owner);
    PyObject *v = odk_hp_bytes_view(owner, b->buf, b->len);
    Py_DECREF(owner);
    return v;
}

static void bv_dealloc(BytesViewObject *self)
{
    Py_DECREF(self->owner);
    if (n_free_views < FREE_VIEWS_MAX) {
        self->owner = (PyObject *)free_views;
        free_views = self;
        n_free_views++;
    } else {
        PyObject_Free(self);
    }
}

static int bv_getbuffer(BytesViewObject *self, Py_buffer *view, int flags)
{
    return PyBuffer_FillInfo(view, (PyObject *)self, (void *)self->buf, self->len, 1, flags);
}

static Py_ssize_t bv_length(BytesViewObject *self)
{
    return self->len;
}

static PyObject *bv_item(BytesViewObject *self, Py_ssize_t i)
{
    if (i < 0 || i >= self->len) {
        PyErr_SetString(PyExc_IndexError, "index out of range");
        return NULL;
    }
    return PyLong_FromLong((unsigned char)self->buf[i]);
}

static PyObject *bv_subscript(BytesViewObject *self, PyObject *key)
{
    if (PyIndex_Check(key)) {
        Py_ssize_t i = PyNumber_AsSsize_t(key, PyExc_IndexError);
        if (i == -1 && PyErr_Occurred())
            return NULL;
        return bv_item(self, i < 0 ? i + self->len : i);
    }
    if (!PySlice_Check(key)) {
        PyErr_Format(PyExc_TypeError, "BytesView indices must be integers or slices, not %.100s",
                     Py_TYPE(key)->tp_name);
        return NULL;
    }
    Py_ssize_t start, stop, step;
    if (PySlice_Unpack(key, &start, &stop, &step) < 0)
        return NULL;
    Py_ssize_t n = PySlice_AdjustIndices(self->len, &start, &stop, step);
    if (step == 1)
        return odk_hp_bytes_view(self->owner, self->buf + start, n);
    PyObject *mv = PyMemoryView_FromObject((PyObject *)self), *r = NULL;
    if (mv != NULL)
        r = PyObject_GetItem(mv, key);
    Py_XDECREF(mv);
    return r;
}

/* bytes' order and equality against any object with a buffer (as bytearray compares) */
static PyObject *bv_richcompare(PyObject *a, PyObject *b, int op)
{
    Py_buffer x, y;
    if (PyObject_GetBuffer(a, &x, PyBUF_SIMPLE) < 0) {
        PyErr_Clear();
        Py_RETURN_NOTIMPLEMENTED;
    }
    if (PyObject_GetBuffer(b, &y, PyBUF_SIMPLE) < 0) {
        PyErr_Clear();
        PyBuffer_Release(&x);
        Py_RETURN_NOTIMPLEMENTED;
    }
    Py_ssize_t n = x.len < y.len ? x.len : y.len;
    int c = n ? memcmp(x.buf, y.buf, (size_t)n) : 0;
    if (c == 0)
        c = x.len < y.len ? -1 : x.len > y.len;
    PyBuffer_Release(&x);
    PyBuffer_Release(&y);
    Py_RETURN_RICHCOMPARE(c, 0, op);
}

static Py_hash_t bv_hash(BytesViewObject *self)
{
    return _Py_HashBytes(self->buf, self->len);   /* not cached: BytesView(bytearray) can change */
}

static PyObject *bv_repr(BytesViewObject *self)
{
    return PyUnicode_FromFormat("<odradek BytesView of %zd bytes at %p>", self->len, self);
}

static PyObject *bv_tobytes(BytesViewObject *self, PyObject *Py_UNUSED(ignored))
{
    return PyBytes_FromStringAndSize(self->buf, self->len);
}

static PyMethodDef bv_methods[] = {
    {"tobytes", (PyCFunction)bv_tobytes, METH_NOARGS, "The bytes, copied (as bytes(view))."},
    {"__bytes__", (PyCFunction)bv_tobytes, METH_NOARGS, "The bytes, copied."},
    {NULL, NULL, 0, NULL},
};

static PySequenceMethods bv_as_sequence = {
    .sq_length = (lenfunc)bv_length,
    .sq_item = (ssizeargfunc)bv_item,
};

static PyMappingMethods bv_as_mapping = {
    .mp_length = (lenfunc)bv_length,
    .mp_subscript = (binaryfunc)bv_subscript,
};

static PyBufferProcs bv_as_buffer = {
    .bf_getbuffer = (getbufferproc)bv_getbuffer,
};

PyDoc_STRVAR(bv_doc,
"BytesView(data)\n"
"--\n\n"
"A read-only view of bytes (a zero-copy Record's key or value): the buffer protocol\n"
"(memoryview(v), bytes(v)), len, indexing and slicing, == and hash like bytes.");

static PyTypeObject BytesViewType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "odradek._hotpath.BytesView",
    .tp_basicsize = sizeof(BytesViewObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = bv_doc,
    .tp_dealloc = (destructor)bv_dealloc,
    .tp_repr = (reprfunc)bv_repr,
    .tp_hash = (hashfunc)bv_hash,
    .tp_richcompare = bv_richcompare,
    .tp_as_sequence = &bv_as_sequence,
    .tp_as_mapping = &bv_as_mapping,
    .tp_as_buffer = &bv_as_buffer,
    .tp_methods = bv_methods,
    .tp_new = bv_new,
};

int odk_hp_add_bytes_view(PyObject *module)
{
    if (PyType_Ready(&BytesViewType) < 0)
        return -1;
    if (PyModule_AddObject(module, "BytesView", Py_NewRef(&BytesViewType)) < 0) {
        Py_DECREF(&BytesViewType);
        return -1;
    }
    return 0;
}
