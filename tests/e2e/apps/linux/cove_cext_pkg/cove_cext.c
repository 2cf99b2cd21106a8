/* The smallest C extension: cove_cext.triple(x) == 3 * x. Needs Python.h to build. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static PyObject *
triple(PyObject *self, PyObject *arg)
{
	(void)self;
	long v = PyLong_AsLong(arg);
	if (v == -1 && PyErr_Occurred())
		return NULL;
	return PyLong_FromLong(3 * v);
}

static PyMethodDef methods[] = {{"triple", triple, METH_O, "3 * x"}, {NULL, NULL, 0, NULL}};
static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "cove_cext", NULL, -1, methods};

PyMODINIT_FUNC
PyInit_cove_cext(void)
{
	return PyModule_Create(&module);
}
