/* Fetch decoding into record objects (odradek._hotpath): see hotpath.h. */
#include "hotpath.h"

int odk_hp_add_consumer(PyObject *module)
{
    (void)module;
    return 0;
}
