/* The Producer accumulator's batches in flight and their delivery reports (included by
 * hp_producer.c only, after the link lookups; split out to keep that file readable):
 * the in-flight queue's search and removal, collect() (the sender's round over the
 * completion rings), take_sealed() and take_open() (close() and abort_transaction()).
 * The contract, locking and ownership rules are at the top of hp_producer.c; every
 * function here runs with the GIL held, and the *_locked ones with the link's mutex
 * held too.
 */
#ifndef ODRADEK_HP_COMPLETIONS_H
#define ODRADEK_HP_COMPLETIONS_H

static PyObject *sealed_tuple(Sealed s)
{
    PyObject *pending = s.pending ? s.pending : Py_None;
    if (!s.pending)
        Py_INCREF(Py_None);
    return Py_BuildValue("(iN)", (int)s.count, pending);
}

/* The in-flight entry with that tag removed from l's queue (locked) into *out; 0 if there
 * is none. */
static int remove_inflight_locked(Link *l, uint32_t tag, Sealed *out)
{
    for (size_t i = 0; i < l->in_len; i++) {
        if (l->inflight[(l->in_first + i) % l->in_cap].tag != tag)
            continue;
        *out = l->inflight[(l->in_first + i) % l->in_cap];
        for (size_t j = i; j > 0; j--)   /* close the gap (i is 0 when in order) */
            l->inflight[(l->in_first + j) % l->in_cap] = l->inflight[(l->in_first + j - 1) % l->in_cap];
        l->in_first = (l->in_first + 1) % l->in_cap;
        l->in_len--;
        return 1;
    }
    return 0;
}

/* A copy of the in-flight entry with that tag (locked) in *out, with a new reference to its
 * pending list (the report's own); 0 if there is none. */
static int find_inflight_locked(Link *l, uint32_t tag, Sealed *out)
{
    for (size_t i = 0; i < l->in_len; i++)
        if (l->inflight[(l->in_first + i) % l->in_cap].tag == tag) {
            *out = l->inflight[(l->in_first + i) % l->in_cap];
            Py_XINCREF(out->pending);
            return 1;
        }
    return 0;
}

/* The reports of take_sealed() and collect() are made before their entries leave the
 * queue (each holding its own reference to the pending list), so that a MemoryError
 * changes nothing: the records stay in flight, to be taken again (close() reports them),
 * and are never lost to len(producer). Building runs with the lock released (it can run
 * the garbage collector); an entry that left the queue meanwhile is not reported here. */

/* take_sealed(link): [(count, pending), ...] of every sealed batch in flight, removed
 * (acks=0 reports, and the failures of close()). */
static PyObject *Accumulator_take_sealed(Accumulator *a, PyObject *arg)
{
    Link *l = link_of_arg(a, arg);
    if (l == NULL)
        return NULL;
    pthread_mutex_lock(&l->lock);
    size_t n = l->in_len;
    Sealed *taken = n ? PyMem_RawMalloc(n * sizeof *taken) : NULL;
    for (size_t i = 0; taken != NULL && i < n; i++) {
        taken[i] = l->inflight[(l->in_first + i) % l->in_cap];
        Py_XINCREF(taken[i].pending);
    }
    pthread_mutex_unlock(&l->lock);
    if (n && taken == NULL)
        return PyErr_NoMemory();
    PyObject *out = PyList_New((Py_ssize_t)n);
    for (size_t i = 0; i < n; i++) {
        PyObject *t = out == NULL ? NULL : sealed_tuple(taken[i]);   /* takes the reference */
        if (t == NULL) {
            for (size_t j = i + (out != NULL); j < n; j++)
                Py_XDECREF(taken[j].pending);
            Py_XDECREF(out);
            PyMem_RawFree(taken);
            return NULL;
        }
        PyList_SET_ITEM(out, (Py_ssize_t)i, t);
    }
    Py_ssize_t gone = 0;
    pthread_mutex_lock(&l->lock);
    for (size_t i = 0; i < n; i++)
        if (!remove_inflight_locked(l, taken[i].tag, &taken[i]))
            taken[i].count = -1;        /* it left the queue meanwhile */
    pthread_mutex_unlock(&l->lock);
    for (size_t i = 0; i < n; i++) {
        if (taken[i].count < 0) {
            if (PySequence_DelItem(out, (Py_ssize_t)i - gone++) < 0)
                PyErr_Clear();          /* cannot fail for an index in range */
        } else {
            Py_XDECREF(taken[i].pending);   /* the queue's reference */
        }
    }
    PyMem_RawFree(taken);
    return out;
}

/* collect()'s step for one batch done (acknowledged with base_offset and code, or with
 * acks=0 committed): its report (link, count, pending or None, base offset, error code)
 * appended to reports if it has a callback or an error, else its count added to
 * a->settled. 0 if no batch with that tag is in flight, 1 when done, -1 on error
 * (nothing changed). */
static int settle(Accumulator *a, Link *l, Py_ssize_t id, uint32_t tag, int64_t base_offset, int32_t code,
                  PyObject *reports)
{
    Sealed s = {0, 0, NULL};
    pthread_mutex_lock(&l->lock);
    int found = find_inflight_locked(l, tag, &s);
    pthread_mutex_unlock(&l->lock);
    if (!found)
        return 0;
    int reported = 0;
    if (s.pending != NULL || code != 0) {
        PyObject *item = Py_BuildValue("(niOLi)", id, (int)s.count, s.pending ? s.pending : Py_None,
                                       (long long)base_offset, (int)code);
        Py_XDECREF(s.pending);
        if (item == NULL)
            return -1;
        int rc = PyList_Append(reports, item);
        Py_DECREF(item);
        if (rc < 0)
            return -1;
        reported = 1;
    }
    pthread_mutex_lock(&l->lock);
    found = remove_inflight_locked(l, tag, &s);
    pthread_mutex_unlock(&l->lock);
    if (!found) {   /* it left the queue meanwhile (take_sealed): not reported here */
        Py_ssize_t n = PyList_GET_SIZE(reports);
        if (reported)   /* shrinking a list allocates nothing */
            PyList_SetSlice(reports, n - 1, n, NULL);
        return 1;
    }
    Py_XDECREF(s.pending);              /* the queue's reference */
    if (!reported)
        a->settled += s.count;
    return 1;
}

/* One link's completions read and released into a->settled / reports / strays; *corrupt
 * set to (link, message) at an impossible entry, where reading stops. -1 on error: the
 * completion it met stays in the ring. */
static int collect_completions(Accumulator *a, Link *l, Py_ssize_t id, PyObject *reports, PyObject *strays,
                               PyObject **corrupt)
{
    odk_ring *cr = l->completions;
    for (int i = 0; i < (1 << 16); i++) {   /* bounded: the ring holds fewer completions */
        int64_t off = odk_ring_peek(cr);
        if (off == -ODK_SHM_EMPTY)
            return 0;
        if (off < 0 || cr->entry_len != ODK_RING_COMPLETION_SIZE) {
            *corrupt = off < 0
                ? Py_BuildValue("(ns)", id, "a completion entry is impossible (bad cursor or length): the "
                                "partition leader wrote a broken completion ring")
                : Py_BuildValue("(nN)", id, PyUnicode_FromFormat("a completion entry is %d bytes, not %u",
                                                                 ODK_RING_COMPLETION_SIZE, cr->entry_len));
            return *corrupt == NULL ? -1 : 0;
        }
        const uint8_t *c = cr->base + off;   /* base_offset:i64 error_code:i32, little-endian */
        uint64_t bo = 0;
        uint32_t code = 0;
        for (int b = 7; b >= 0; b--)
            bo = bo << 8 | c[b];
        for (int b = 11; b >= 8; b--)
            code = code << 8 | c[b];
        uint32_t tag = cr->entry_tag;
        int rc = settle(a, l, id, tag, (int64_t)bo, (int32_t)code, reports);
        if (rc < 0)
            return -1;
        if (rc == 0) {
            PyObject *stray = Py_BuildValue("(nI)", id, (unsigned)tag);
            if (stray == NULL || PyList_Append(strays, stray) < 0) {
                Py_XDECREF(stray);
                return -1;
            }
            Py_DECREF(stray);
        }
        odk_ring_release(cr);
    }
    return 0;
}

/* collect() -> (seen, reports, strays, corrupt): the sender's round over every link in
 * one call, holding the GIL throughout (a cffi call per completion gave the GIL away and
 * took it back each time: with a producing thread busy, every take waited out the
 * interpreter's switch interval and forced a switch). seen: our doorbell's counter, read
 * first (the sender sleeps on it after the round). Each link's completions are read and
 * released (with acks=0 every sealed batch counts as done): a batch done without error
 * whose records have no on_delivery only adds its record count to `settled`; the others
 * are reports (link, count, pending or None, base offset, error code); a completion of
 * no batch in flight is a stray (link, tag); corrupt is None or (link, message) of a
 * completion ring holding an impossible entry (reading it stops there). Out of memory
 * before the first completion it raises MemoryError; after, it returns what it took and
 * leaves the completion it met in its ring, to be read next time: nothing is lost. */
static PyObject *Accumulator_collect(Accumulator *a, PyObject *Py_UNUSED(ignored))
{
    uint32_t seen = a->doorbell != NULL ? odk_doorbell_value(a->doorbell) : 0;
    PyObject *out = PyTuple_New(4), *reports = PyList_New(0), *strays = PyList_New(0), *corrupt = NULL;
    PyObject *seen_obj = PyLong_FromUnsignedLong(seen);
    if (out == NULL || reports == NULL || strays == NULL || seen_obj == NULL) {
        Py_XDECREF(out);
        Py_XDECREF(reports);
        Py_XDECREF(strays);
        Py_XDECREF(seen_obj);
        return NULL;
    }
    int rc = 0;
    for (Py_ssize_t id = 0; id < a->nlinks && corrupt == NULL && rc == 0; id++) {
        Link *l = a->links[id];
        if (a->acks != 0) {
            if (l->completions != NULL)
                rc = collect_completions(a, l, id, reports, strays, &corrupt);
            continue;
        }
        pthread_mutex_lock(&l->lock);
        size_t queued = l->in_len;   /* acks=0: these, not what a finalizer run meanwhile adds */
        pthread_mutex_unlock(&l->lock);
        for (size_t k = 0; k < queued; k++) {
            pthread_mutex_lock(&l->lock);
            int some = l->in_len > 0;
            uint32_t tag = some ? l->inflight[l->in_first].tag : 0;
            pthread_mutex_unlock(&l->lock);
            if (!some || (rc = settle(a, l, id, tag, -1, 0, reports)) < 0)
                break;
        }
    }
    if (rc < 0)
        PyErr_Clear();   /* out of memory midway: what was taken is returned (see above) */
    PyTuple_SET_ITEM(out, 0, seen_obj);
    PyTuple_SET_ITEM(out, 1, reports);
    PyTuple_SET_ITEM(out, 2, strays);
    PyTuple_SET_ITEM(out, 3, corrupt != NULL ? corrupt : Py_NewRef(Py_None));
    return out;
}

/* take_open(link): [(count, pending)] of the open batch, dropped (its reservation
 * cancelled: no reader ever sees it), or [] (close() reports such records failed). */
static PyObject *Accumulator_take_open(Accumulator *a, PyObject *arg)
{
    Link *l = link_of_arg(a, arg);
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

#endif
