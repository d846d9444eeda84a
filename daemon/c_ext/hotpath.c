/* odradek._hotpath module init: see hotpath.h. */
#include "hotpath.h"

static struct PyModuleDef hotpath_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "odradek._hotpath",
    .m_doc = "The client's per-record hot paths in C (daemon/c_ext/hotpath.h).",
    .m_size = -1,
};

PyMODINIT_FUNC PyInit__hotpath(void)
{
    PyObject *m = PyModule_Create(&hotpath_module);
    if (m == NULL)
        return NULL;
    if (odk_hp_add_producer(m) < 0 || odk_hp_add_consumer(m) < 0 || odk_hp_add_bytes_view(m) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
