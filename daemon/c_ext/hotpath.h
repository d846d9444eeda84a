/* odradek._hotpath: the client's per-record hot paths, written against the CPython C API.
 *
 * Why a second native module beside the CFFI one (odradek._native): this one builds and
 * takes Python objects (bytes, memoryviews, record objects, callbacks) per record, which
 * CFFI cannot do (its cdef has no PyObject), and a CFFI call with conversions costs
 * ~0.2 us on the dev VM, as much as the whole encoding of a 100-byte record. Everything
 * that needs no Python object stays in odradek._native; this module links the same C
 * sources (odradek.c: CRC-32C, record decoding; shm.c: rings, futexes), so each byte
 * layout still has one owner in C.
 *
 * Each part registers its types and functions from its own file:
 *   hp_producer.c   odk_hp_add_producer(module)   the Producer's record accumulator
 *                   (its structs and batch core in hp_accumulator.h, the record
 *                   encoding in hp_record.h: headers included by it alone)
 *   hp_consumer.c   odk_hp_add_consumer(module)   fetch decoding into record objects
 *   hp_bytes_view.c odk_hp_add_bytes_view(module) BytesView, a zero-copy key or value
 * Each returns 0, or -1 with a Python exception set.
 */
#ifndef ODRADEK_HOTPATH_H
#define ODRADEK_HOTPATH_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

int odk_hp_add_producer(PyObject *module);
int odk_hp_add_consumer(PyObject *module);
int odk_hp_add_bytes_view(PyObject *module);

/* A private memoryview of obj, a C-contiguous buffer of bytes (else NULL with ValueError
 * naming `who`, or the error of the buffer protocol): the owner of BytesViews. */
PyObject *odk_hp_byte_buffer(PyObject *obj, const char *who);
/* A new BytesView of [buf, buf + len), which lies inside owner's buffer (owner from
 * odk_hp_byte_buffer); NULL with MemoryError. */
PyObject *odk_hp_bytes_view(PyObject *owner, const char *buf, Py_ssize_t len);

#endif
