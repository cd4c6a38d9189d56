/* sluice._redact: whether a piece of text may hold a secret, answered in C.
 *
 * scan(data, keys) is the cheap first look of sluice.redact.Redactor: true when data holds one
 * of keys (the configured provider keys, as bytes) or a run shaped like a provider's token
 * (see _tokens.h); the Python side then finds and replaces them with its regular expressions.
 * No I/O, no state.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "_tokens.h"

static PyObject *
scan(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "scan() takes 2 arguments (%zd given)", nargs);
        return NULL;
    }
    PyObject *data = args[0];
    const char *p;
    Py_ssize_t len;
    if (PyBytes_CheckExact(data)) {
        p = PyBytes_AS_STRING(data);
        len = PyBytes_GET_SIZE(data);
    }
    else if (PyUnicode_CheckExact(data)) {
        if (PyUnicode_IS_COMPACT_ASCII(data)) {
            p = (const char *)PyUnicode_DATA(data);
            len = PyUnicode_GET_LENGTH(data);
        }
        else {
            /* (the UTF-8 form is kept by the string, made once) */
            p = PyUnicode_AsUTF8AndSize(data, &len);
            if (p == NULL)
                return NULL;
        }
    }
    else {
        PyErr_Format(PyExc_TypeError, "scan() takes bytes or str, not %.100s",
                     Py_TYPE(data)->tp_name);
        return NULL;
    }
    int found = holds_key((const unsigned char *)p, len, args[1]);
    if (found < 0)
        return NULL;
    if (found || holds_token((const unsigned char *)p, len))
        Py_RETURN_TRUE;
    Py_RETURN_FALSE;
}

static PyMethodDef methods[] = {
    {"scan", (PyCFunction)(void (*)(void))scan, METH_FASTCALL,
     "scan(data, keys, /)\n--\n\n"
     "Whether data (bytes or str) may hold one of keys (a tuple of bytes) or a token-shaped "
     "secret."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    "sluice._redact",
    "Whether a piece of text may hold a secret: the cheap first look of sluice.redact.",
    0,
    methods,
    NULL,
    NULL,
    NULL,
    NULL,
};

PyMODINIT_FUNC
PyInit__redact(void)
{
    return PyModuleDef_Init(&module);
}
