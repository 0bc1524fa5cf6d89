/*
 * libnethsm_pkcs11.so, forwarding: every C_* goes to p11nethsm.dispatch.entry
 * (index, *args as unsigned 64-bit integers) in the embedded CPython; the
 * stubs and function lists are generated (build/shim/generated_stubs.h).
 * The reasons for every rule: docs/embedding.md.
 *  - Every call into Python goes through the table `py` filled by dlsym
 *    (libpython is not linked; Python.h serves only for types).
 *  - One thread state pinned per foreign OS thread (§3).
 *  - "ready && getpid() == pid" gate on every call (§6).
 */
#include "shim.h"
#include "generated_stubs.h"

struct p11_py py;
int (*py_is_finalizing)(void);
PyObject **py_exc_keyboard_interrupt;

int py_load_table(void *handle, const char *where)
{
#define P11_PY_LOAD(ret, name, args)                                     \
    *(void **)(&py.f_##name) = dlsym(handle, #name);                     \
    if (!py.f_##name) {                                                  \
        p11_log("symbol %s not found in %s", #name, where);              \
        return -1;                                                       \
    }
    P11_PYAPI(P11_PY_LOAD)
#undef P11_PY_LOAD
    py_exc_keyboard_interrupt = dlsym(handle, "PyExc_KeyboardInterrupt");
    /* optional: public since 3.13, underscored before */
    *(void **)&py_is_finalizing = dlsym(handle, "Py_IsFinalizing");
    if (!py_is_finalizing)
        *(void **)&py_is_finalizing = dlsym(handle, "_Py_IsFinalizing");
    return 0;
}

pthread_mutex_t init_mu = PTHREAD_MUTEX_INITIALIZER;
int interp_up;
int host_mode;
PyObject *entry_fn;
PyObject *idx_obj[P11_N_FUNCTIONS];
volatile int ready;
volatile pid_t ready_pid;
static pthread_key_t tkey; /* pinned PyThreadState* per foreign OS thread    */
static int tkey_made;

static inline int is_ready(void)
{
    return __atomic_load_n(&ready, __ATOMIC_ACQUIRE) && getpid() == ready_pid;
}

/* ------------------------------------------------------------------ */
/* GIL / thread state                                                  */
/* ------------------------------------------------------------------ */
void gil_enter(struct gil *s)
{
    s->pinned = NULL;
    if (!host_mode) {
        PyThreadState *ts = pthread_getspecific(tkey);
        if (ts) {
            PY(PyEval_RestoreThread)(ts);
            s->pinned = ts;
            return;
        }
        if (PY(PyGILState_GetThisThreadState)() == NULL) {
            /* foreign thread, first call: create its state once and pin it
             * (this Ensure is never released; the key destructor frees the
             * state at thread exit). If the key cannot be set, later calls
             * take the Ensure/Release path below with the same state. */
            (void)PY(PyGILState_Ensure)();
            ts = PY(PyEval_SaveThread)();
            (void)pthread_setspecific(tkey, ts);
            PY(PyEval_RestoreThread)(ts);
            s->pinned = ts;
            return;
        }
    }
    /* host mode, or a thread that already has a Python thread state
     * (Python-created threads, the thread that ran Py_InitializeFromConfig):
     * the usual Ensure/Release, cheap when the state exists. */
    s->g = PY(PyGILState_Ensure)();
}

void gil_leave(struct gil *s)
{
    if (s->pinned)
        (void)PY(PyEval_SaveThread)();
    else
        PY(PyGILState_Release)(s->g);
}

/* thread exit: free the pinned state. No PyGILState_* calls here: glibc may
 * already have cleared CPython's own TSS slot for this thread. */
static void tkey_destructor(void *p)
{
    PyThreadState *ts = p;
    if (!ts || !interp_up || host_mode)
        return;
    PY(PyEval_RestoreThread)(ts);
    PY(PyThreadState_Clear)(ts);
    PY(PyThreadState_DeleteCurrent)();
}

int make_tkey(void)
{
    if (tkey_made)
        return 0;
    if (pthread_key_create(&tkey, tkey_destructor) != 0) {
        p11_log("pthread_key_create failed");
        return -1;
    }
    tkey_made = 1;
    return 0;
}


/* ------------------------------------------------------------------ */
/* forwarding                                                          */
/* ------------------------------------------------------------------ */
static CK_RV call_python(unsigned idx, const uint64_t *a, unsigned n)
{
    /* A Python host that is exiting (host mode): its modules are being torn
     * down and the dispatcher cannot run; python-pkcs11 calls C_Finalize from
     * a destructor at exactly that time. Nothing to undo in a dying process. */
    if (py_is_finalizing && py_is_finalizing())
        return idx == P11_IDX_C_Finalize ? CKR_OK : CKR_CRYPTOKI_NOT_INITIALIZED;
    PyObject *argv[2 + P11_MAX_ARGS];
    CK_RV rv = CKR_GENERAL_ERROR;
    unsigned made = 0;
    struct gil s;
    gil_enter(&s);
    argv[1] = idx_obj[idx];
    for (; made < n; made++) {
        argv[2 + made] = PY(PyLong_FromUnsignedLongLong)(a[made]);
        if (!argv[2 + made])
            break;
    }
    if (made < n) {
        p11_log("%s: cannot convert arguments", p11_names[idx]);
        PY(PyErr_WriteUnraisable)(NULL);
        goto out;
    }
    PyObject *res = PY(PyObject_Vectorcall)(entry_fn, argv + 1,
                                            (size_t)(1 + n) | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    if (!res && py_exc_keyboard_interrupt && *py_exc_keyboard_interrupt &&
        PY(PyErr_ExceptionMatches)(*py_exc_keyboard_interrupt)) {
        /* Ctrl-C in a Python host: its SIGINT handler raised KeyboardInterrupt
         * in our code (the main thread was waiting in a call). It is the
         * host's: trip it again, so the host's handler raises it in the host's
         * own code as soon as this call returns. */
        PY(PyErr_Clear)();
        PY(PyErr_SetInterrupt)();
        rv = CKR_FUNCTION_CANCELED;
        goto out;
    }
    if (!res) {
        p11_log("%s: %s.%s raised; returning CKR_GENERAL_ERROR", p11_names[idx],
                P11_DISPATCH_MODULE, P11_DISPATCH_ATTR);
        PY(PyErr_WriteUnraisable)(entry_fn);
        goto out;
    }
    unsigned long v = PY(PyLong_AsUnsignedLong)(res);
    if (v == (unsigned long)-1 && PY(PyErr_Occurred)()) {
        p11_log("%s: %s.%s returned a non-int or out-of-range value; returning "
                "CKR_GENERAL_ERROR",
                p11_names[idx], P11_DISPATCH_MODULE, P11_DISPATCH_ATTR);
        PY(PyErr_WriteUnraisable)(res);
    } else {
        rv = v;
    }
    PY(Py_DecRef)(res);
out:
    for (unsigned i = 0; i < made; i++)
        PY(Py_DecRef)(argv[2 + i]);
    gil_leave(&s);
    return rv;
}

static CK_RV p11_forward(unsigned idx, const uint64_t *a, unsigned n)
{
    if (!is_ready())
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    return call_python(idx, a, n);
}

static CK_RV p11_forward_initialize(unsigned idx, const uint64_t *a, unsigned n)
{
    pthread_mutex_lock(&init_mu);
    int rc = p11_bootstrap();
    if (rc == 0) {
        ready_pid = getpid();
        __atomic_store_n(&ready, 1, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&init_mu);
    if (rc < 0)
        return CKR_GENERAL_ERROR;
    return call_python(idx, a, n);
}

/* ------------------------------------------------------------------ */
/* answered in C: function lists and interfaces                        */
/* ------------------------------------------------------------------ */
static CK_CHAR p11_iface_name[] = "PKCS 11";
static CK_INTERFACE p11_interfaces[2] = {
    {p11_iface_name, &p11_list_30, 0},
    {p11_iface_name, &p11_list_240, 0},
};
#define P11_N_INTERFACES (sizeof p11_interfaces / sizeof p11_interfaces[0])

P11_EXPORT CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR ppFunctionList)
{
    if (!ppFunctionList)
        return CKR_ARGUMENTS_BAD;
    *ppFunctionList = &p11_list_240;
    return CKR_OK;
}

P11_EXPORT CK_RV C_GetInterfaceList(CK_INTERFACE_PTR pInterfacesList, CK_ULONG_PTR pulCount)
{
    if (!pulCount)
        return CKR_ARGUMENTS_BAD;
    if (!pInterfacesList) {
        *pulCount = P11_N_INTERFACES;
        return CKR_OK;
    }
    if (*pulCount < P11_N_INTERFACES) {
        *pulCount = P11_N_INTERFACES;
        return CKR_BUFFER_TOO_SMALL;
    }
    memcpy(pInterfacesList, p11_interfaces, sizeof p11_interfaces);
    *pulCount = P11_N_INTERFACES;
    return CKR_OK;
}

P11_EXPORT CK_RV C_GetInterface(CK_UTF8CHAR_PTR pInterfaceName, CK_VERSION_PTR pVersion,
                                CK_INTERFACE_PTR_PTR ppInterface, CK_FLAGS flags)
{
    if (!ppInterface)
        return CKR_ARGUMENTS_BAD;
    if (pInterfaceName && strcmp((const char *)pInterfaceName, (const char *)p11_iface_name) != 0)
        return CKR_ARGUMENTS_BAD;
    for (size_t i = 0; i < P11_N_INTERFACES; i++) {
        const CK_VERSION *v = p11_interfaces[i].pFunctionList;
        if (pVersion && (pVersion->major != v->major || pVersion->minor != v->minor))
            continue;
        if ((p11_interfaces[i].flags & flags) != flags)
            continue;
        *ppInterface = &p11_interfaces[i];
        return CKR_OK;
    }
    return CKR_ARGUMENTS_BAD;
}