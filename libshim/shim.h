/*
 * Internal interface between the shim's three files (docs/embedding.md):
 *  - forward.c:   the CPython call table, GIL and pinned thread states, the
 *                 "ready" gate, forwarding every C_* to p11nethsm.dispatch.entry,
 *                 the interfaces answered in C;
 *  - bootstrap.c: finding the venv and libpython, the foreign-Python check,
 *                 host mode, starting the interpreter, importing the dispatcher;
 *  - hostsafe.c:  what keeps the host's process as it was: stderr-only
 *                 messages, stdout, signal dispositions, the fork handlers.
 * Everything here has hidden visibility (-fvisibility=hidden): only C_* are
 * exported (exports.map).
 */
#ifndef P11_SHIM_H
#define P11_SHIM_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "generated.h"

#define P11_DISPATCH_MODULE "p11nethsm.dispatch"
#define P11_DISPATCH_ATTR "entry"
#define P11_FORKSAFE_MODULE "p11nethsm.forksafe"

/* hostsafe.c: one line on stderr, one write(2) per line; never stdout */
__attribute__((format(printf, 1, 2))) void p11_log(const char *fmt, ...);

/* forward.c: the Python C-API through dlsym */
#define P11_PYAPI(X)                                                                       \
    X(int, Py_IsInitialized, (void))                                                       \
    X(const char *, Py_GetVersion, (void))                                                 \
    X(void, PyConfig_InitIsolatedConfig, (PyConfig *))                                     \
    X(PyStatus, PyConfig_SetBytesString, (PyConfig *, wchar_t **, const char *))           \
    X(PyStatus, Py_InitializeFromConfig, (const PyConfig *))                               \
    X(int, PyStatus_Exception, (PyStatus))                                                 \
    X(void, PyConfig_Clear, (PyConfig *))                                                  \
    X(PyThreadState *, PyEval_SaveThread, (void))                                          \
    X(void, PyEval_RestoreThread, (PyThreadState *))                                       \
    X(PyGILState_STATE, PyGILState_Ensure, (void))                                         \
    X(void, PyGILState_Release, (PyGILState_STATE))                                        \
    X(PyThreadState *, PyGILState_GetThisThreadState, (void))                              \
    X(int, PyGILState_Check, (void))                                                       \
    X(void, PyThreadState_Clear, (PyThreadState *))                                        \
    X(void, PyThreadState_DeleteCurrent, (void))                                           \
    X(void, PyOS_BeforeFork, (void))                                                       \
    X(void, PyOS_AfterFork_Parent, (void))                                                 \
    X(void, PyOS_AfterFork_Child, (void))                                                  \
    X(PyObject *, PyImport_ImportModule, (const char *))                                   \
    X(PyObject *, PyObject_GetAttrString, (PyObject *, const char *))                      \
    X(int, PyObject_SetAttrString, (PyObject *, const char *, PyObject *))                 \
    X(PyObject *, PyObject_CallOneArg, (PyObject *, PyObject *))                           \
    X(PyObject *, PyObject_Vectorcall, (PyObject *, PyObject *const *, size_t, PyObject *)) \
    X(PyObject *, PyUnicode_DecodeFSDefault, (const char *))                               \
    X(PyObject *, PyLong_FromUnsignedLongLong, (unsigned long long))                       \
    X(unsigned long, PyLong_AsUnsignedLong, (PyObject *))                                  \
    X(PyObject *, PyErr_Occurred, (void))                                                  \
    X(void, PyErr_Clear, (void))                                                           \
    X(int, PyErr_ExceptionMatches, (PyObject *))                                           \
    X(void, PyErr_SetInterrupt, (void))                                                    \
    X(PyObject *, PySys_GetObject, (const char *))                                         \
    X(PyObject *, PyDict_GetItemString, (PyObject *, const char *))                        \
    X(int, PyDict_Next, (PyObject *, Py_ssize_t *, PyObject **, PyObject **))              \
    X(PyObject *, PyObject_CallNoArgs, (PyObject *))                                       \
    X(int, PyObject_IsTrue, (PyObject *))                                                  \
    X(void, PyErr_WriteUnraisable, (PyObject *))                                           \
    X(void, Py_DecRef, (PyObject *))

#define P11_PY_MEMBER(ret, name, args) ret(*f_##name) args;
struct p11_py {
    P11_PYAPI(P11_PY_MEMBER)
};
extern struct p11_py py;
#define PY(name) (py.f_##name)
extern int (*py_is_finalizing)(void);
extern PyObject **py_exc_keyboard_interrupt; /* &PyExc_KeyboardInterrupt */
int py_load_table(void *handle, const char *where);

/* state shared by the three files; lock order everywhere: init_mu, then the GIL */
extern pthread_mutex_t init_mu;
extern int interp_up;          /* table filled and an interpreter is usable      */
extern int host_mode;          /* the process already ran a same-minor CPython  */
extern PyObject *entry_fn;     /* p11nethsm.dispatch.entry (strong ref)         */
extern PyObject *idx_obj[P11_N_FUNCTIONS];
extern volatile int ready;     /* python ready in the process ready_pid         */
extern volatile pid_t ready_pid;

/* forward.c: the GIL for one call from any thread */
struct gil {
    PyThreadState *pinned;
    PyGILState_STATE g;
};
void gil_enter(struct gil *s);
void gil_leave(struct gil *s);
int make_tkey(void); /* init_mu held */

/* hostsafe.c, owned interpreter only; GIL held for the first two */
void owned_protect_stdout(void);
void owned_import_signal_keeping_host_signals(void);
void owned_install_atfork(void);

/* bootstrap.c: interpreter and dispatcher ready; 0 or -1 (logged). init_mu held. */
int p11_bootstrap(void);

#endif
