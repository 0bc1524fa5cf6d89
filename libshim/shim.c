/*
 * libnethsm_pkcs11.so: PKCS#11 module that forwards every call to an
 * embedded CPython, where p11nethsm.dispatch.entry(index, *args) does the work.
 *
 * Design and the reasons for every rule below: docs/embedding.md.
 *  - libpython is NOT linked; it is dlopen'ed (RTLD_NOW|RTLD_GLOBAL) in
 *    C_Initialize. Python.h is included for types/constants only; every call
 *    into Python goes through the table `py` filled by dlsym.
 *  - Py_Finalize is never called; C_Finalize is forwarded like any call.
 *  - One thread state pinned per foreign OS thread; atfork handlers when we
 *    own the interpreter; "ready && getpid() == pid" gate on every call.
 *  - Nothing is ever written to stdout.
 */
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

#ifndef P11_PY_SONAME
#error "P11_PY_SONAME (e.g. \"libpython3.11.so.1.0\") must be defined at build time"
#endif
#ifndef P11_MULTIARCH
#define P11_MULTIARCH ""
#endif
#ifndef P11_BUILD_VENV
#define P11_BUILD_VENV ""
#endif

#define CKR_OK 0x0UL
#define CKR_GENERAL_ERROR 0x5UL
#define CKR_ARGUMENTS_BAD 0x7UL
#define CKR_FUNCTION_CANCELED 0x50UL
#define CKR_BUFFER_TOO_SMALL 0x150UL
#define CKR_CRYPTOKI_NOT_INITIALIZED 0x190UL

#define P11_DISPATCH_MODULE "p11nethsm.dispatch"
#define P11_DISPATCH_ATTR "entry"

/* ------------------------------------------------------------------ */
/* logging: stderr only, one write per line                            */
/* ------------------------------------------------------------------ */
__attribute__((format(printf, 1, 2))) static void p11_log(const char *fmt, ...)
{
    char buf[2048];
    int n = snprintf(buf, sizeof buf, "p11nethsm: ");
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(buf + n, sizeof buf - (size_t)n - 1, fmt, ap);
    va_end(ap);
    if (m < 0)
        m = 0;
    size_t len = (size_t)n + (size_t)m;
    if (len > sizeof buf - 2)
        len = sizeof buf - 2;
    buf[len++] = '\n';
    ssize_t r;
    size_t off = 0;
    while (off < len) {
        r = write(2, buf + off, len - off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        off += (size_t)r;
    }
}

/* ------------------------------------------------------------------ */
/* Python C-API through dlsym                                          */
/* ------------------------------------------------------------------ */
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
static struct {
    P11_PYAPI(P11_PY_MEMBER)
} py;
#define PY(name) (py.f_##name)
static int (*py_is_finalizing)(void);
static PyObject **py_exc_keyboard_interrupt; /* &PyExc_KeyboardInterrupt */

static int py_load_table(void *handle, const char *where)
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

/* ------------------------------------------------------------------ */
/* state                                                               */
/* ------------------------------------------------------------------ */
static pthread_mutex_t init_mu = PTHREAD_MUTEX_INITIALIZER;
static int interp_up;      /* table filled and an interpreter is usable      */
static int interp_broken;  /* Py_InitializeFromConfig failed: never retry   */
static int host_mode;      /* the process already ran a same-minor CPython  */
static PyObject *entry_fn; /* p11nethsm.dispatch.entry (strong ref)         */
static PyObject *idx_obj[P11_N_FUNCTIONS];
static volatile int ready; /* python ready in the process ready_pid         */
static volatile pid_t ready_pid;
static pthread_key_t tkey; /* pinned PyThreadState* per foreign OS thread    */
static int atfork_done;
static int tkey_made;

/* called with init_mu held */
static int make_tkey(void);

static inline int is_ready(void)
{
    return __atomic_load_n(&ready, __ATOMIC_ACQUIRE) && getpid() == ready_pid;
}

/* ------------------------------------------------------------------ */
/* GIL / thread state                                                  */
/* ------------------------------------------------------------------ */
struct gil {
    PyThreadState *pinned;
    PyGILState_STATE g;
};

static void gil_enter(struct gil *s)
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

static void gil_leave(struct gil *s)
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

/* ------------------------------------------------------------------ */
/* fork (only registered when we own the interpreter)                  */
/* ------------------------------------------------------------------ */
static __thread int fork_took_gil;
static __thread int fork_locked;
static __thread PyGILState_STATE fork_g;

/* Whether some thread is inside an import: it holds one of importlib's
 * per-module locks (or the lock guarding one), which a child would inherit
 * locked, with no thread left to release it; the child's next import of that
 * module then waits forever. CPython's own fork handling resets only the
 * global import lock. GIL held; only C-level calls (no bytecode runs, so the
 * GIL is not handed to another thread while looking). */
static int lock_attr_true(PyObject *obj, const char *attr, int call)
{
    PyObject *v = PY(PyObject_GetAttrString)(obj, attr);
    if (!v) {
        PY(PyErr_Clear)();
        return 0;
    }
    if (call) {
        PyObject *r = PY(PyObject_CallNoArgs)(v);
        PY(Py_DecRef)(v);
        if (!r) {
            PY(PyErr_Clear)();
            return 0;
        }
        v = r;
    }
    int t = PY(PyObject_IsTrue)(v);
    PY(Py_DecRef)(v);
    if (t < 0)
        PY(PyErr_Clear)();
    return t > 0;
}

static int lock_held(PyObject *lock, const char *attr)
{
    PyObject *l = PY(PyObject_GetAttrString)(lock, attr);
    if (!l) {
        PY(PyErr_Clear)();
        return 0;
    }
    int held = lock_attr_true(l, "locked", 1);
    PY(Py_DecRef)(l);
    return held;
}

static int imports_in_progress(void)
{
    PyObject *modules = PY(PySys_GetObject)("modules"); /* borrowed */
    PyObject *bootstrap = modules ? PY(PyDict_GetItemString)(modules, "_frozen_importlib") : NULL;
    PyObject *locks = bootstrap ? PY(PyObject_GetAttrString)(bootstrap, "_module_locks") : NULL;
    if (!locks) {
        PY(PyErr_Clear)();
        return 0;
    }
    int busy = 0;
    Py_ssize_t pos = 0;
    PyObject *name, *ref;
    while (!busy && PY(PyDict_Next)(locks, &pos, &name, &ref)) {
        PyObject *lock = PY(PyObject_CallNoArgs)(ref); /* weakref -> _ModuleLock or None */
        if (!lock) {
            PY(PyErr_Clear)();
            continue;
        }
        busy = lock_attr_true(lock, "owner", 0) || lock_held(lock, "lock") || lock_held(lock, "wakeup");
        PY(Py_DecRef)(lock);
    }
    PY(Py_DecRef)(locks);
    return busy;
}

/* p11nethsm.forksafe._busy: threads inside OpenSSL (handshakes, trust stores)
 * that may hold its process-wide locks. GIL held, no bytecode. */
#define P11_FORKSAFE_MODULE "p11nethsm.forksafe"
static int native_sections_busy(void)
{
    PyObject *modules = PY(PySys_GetObject)("modules"); /* borrowed */
    PyObject *mod = modules ? PY(PyDict_GetItemString)(modules, P11_FORKSAFE_MODULE) : NULL;
    if (!mod) {
        PY(PyErr_Clear)();
        return 0;
    }
    return lock_attr_true(mod, "_busy", 0);
}

/* Lock order everywhere: init_mu, then the GIL. */
#define FORK_QUIET_WAIT_US 2000000 /* bound: a stuck section must not stall fork() */
static void atfork_prepare(void)
{
    fork_took_gil = 0;
    fork_locked = 0;
    /* A thread that holds the GIL (Python-level os.fork) is handled by
     * CPython itself; it must not wait for init_mu either. */
    if (interp_up && !host_mode && PY(PyGILState_Check)())
        return;
    pthread_mutex_lock(&init_mu);
    fork_locked = 1;
    if (!interp_up || host_mode)
        return;
    fork_g = PY(PyGILState_Ensure)();
    /* Let imports and OpenSSL sections in progress finish first. Checked after
     * PyOS_BeforeFork: it may hand the GIL to other threads while it waits
     * for the import lock (and runs os.register_at_fork hooks); after it,
     * only C runs until fork(). If busy, undo it, let the others run, retry. */
    for (long waited = 0;; waited += 500) {
        PY(PyOS_BeforeFork)();
        if (!imports_in_progress() && !native_sections_busy())
            break;
        if (waited >= FORK_QUIET_WAIT_US) {
            p11_log("fork: an import or TLS handshake in another thread did not finish "
                    "within %d s; forking anyway", FORK_QUIET_WAIT_US / 1000000);
            break;
        }
        PY(PyOS_AfterFork_Parent)();
        PyThreadState *ts = PY(PyEval_SaveThread)();
        usleep(500);
        PY(PyEval_RestoreThread)(ts);
    }
    fork_took_gil = 1;
}

static void atfork_parent(void)
{
    if (fork_took_gil) {
        PY(PyOS_AfterFork_Parent)();
        PY(PyGILState_Release)(fork_g);
        fork_took_gil = 0;
    }
    if (fork_locked) {
        fork_locked = 0;
        pthread_mutex_unlock(&init_mu);
    }
}

static void atfork_child(void)
{
    __atomic_store_n(&ready, 0, __ATOMIC_RELEASE);
    if (fork_took_gil) {
        PY(PyOS_AfterFork_Child)();
        PY(PyGILState_Release)(fork_g);
        fork_took_gil = 0;
    }
    fork_locked = 0;
    pthread_mutex_init(&init_mu, NULL); /* its owner, if any, is gone */
}

/* ------------------------------------------------------------------ */
/* venv and libpython discovery                                        */
/* ------------------------------------------------------------------ */
static int file_exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0;
}

static int venv_at(const char *dir, char *out, size_t outsz)
{
    char cfg[PATH_MAX];
    if (snprintf(cfg, sizeof cfg, "%s/pyvenv.cfg", dir) >= (int)sizeof cfg)
        return 0;
    if (!file_exists(cfg))
        return 0;
    if (snprintf(out, outsz, "%s", dir) >= (int)outsz)
        return 0;
    return 1;
}

static int find_venv(char *out, size_t outsz)
{
    const char *env = secure_getenv("P11NETHSM_VENV");
    if (env && *env) {
        if (venv_at(env, out, outsz))
            return 0;
        p11_log("P11NETHSM_VENV=%s: no pyvenv.cfg there", env);
        return -1;
    }
    Dl_info info;
    char so[PATH_MAX];
    if (dladdr((void *)&C_GetFunctionList, &info) && info.dli_fname &&
        realpath(info.dli_fname, so)) {
        char dir[PATH_MAX], sub[PATH_MAX];
        snprintf(dir, sizeof dir, "%s", so);
        for (int level = 0; level <= 6; level++) {
            char *slash = strrchr(dir, '/');
            if (!slash)
                break;
            if (slash == dir)
                slash[1] = '\0'; /* "/" */
            else
                *slash = '\0';
            if (venv_at(dir, out, outsz))
                return 0;
            if (snprintf(sub, sizeof sub, "%s%s.venv", dir,
                         strcmp(dir, "/") == 0 ? "" : "/") < (int)sizeof sub &&
                venv_at(sub, out, outsz))
                return 0;
            if (strcmp(dir, "/") == 0)
                break;
        }
    }
    if (P11_BUILD_VENV[0] && venv_at(P11_BUILD_VENV, out, outsz))
        return 0;
    p11_log("no Python venv found (set P11NETHSM_VENV to the venv directory "
            "containing pyvenv.cfg)");
    return -1;
}

static void trim(char *s)
{
    size_t n = strlen(s);
    while (n && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' ' || s[n - 1] == '\t'))
        s[--n] = '\0';
    size_t i = 0;
    while (s[i] == ' ' || s[i] == '\t')
        i++;
    if (i)
        memmove(s, s + i, n - i + 1);
}

/* reads home and version from <venv>/pyvenv.cfg */
static int read_cfg(const char *venv, char *home, size_t homesz, int *maj, int *min)
{
    char path[PATH_MAX], line[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/pyvenv.cfg", venv);
    FILE *f = fopen(path, "re");
    if (!f) {
        p11_log("cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    home[0] = '\0';
    *maj = *min = -1;
    int have_version = 0;
    while (fgets(line, sizeof line, f)) {
        char *eq = strchr(line, '=');
        if (!eq)
            continue;
        *eq = '\0';
        char *key = line, *val = eq + 1;
        trim(key);
        trim(val);
        if (strcmp(key, "home") == 0) {
            snprintf(home, homesz, "%s", val);
        } else if (strcmp(key, "version") == 0 ||
                   (strcmp(key, "version_info") == 0 && !have_version)) {
            if (sscanf(val, "%d.%d", maj, min) == 2)
                have_version = 1;
        }
    }
    fclose(f);
    if (!home[0]) {
        p11_log("%s: no 'home' key", path);
        return -1;
    }
    if (!have_version) {
        p11_log("%s: no 'version' key", path);
        return -1;
    }
    return 0;
}

static void *open_libpython(const char *home, char *used, size_t usedsz)
{
    const char *ma = P11_MULTIARCH;
    char cand[4][PATH_MAX];
    int n = 0;
    snprintf(cand[n++], PATH_MAX, "%s/../lib/%s", home, P11_PY_SONAME);
    if (ma[0])
        snprintf(cand[n++], PATH_MAX, "%s/../lib/%s/%s", home, ma, P11_PY_SONAME);
    snprintf(cand[n++], PATH_MAX, "%s/../lib64/%s", home, P11_PY_SONAME);
    const char *pick = P11_PY_SONAME; /* bare soname: the loader's search path */
    for (int i = 0; i < n; i++) {
        if (file_exists(cand[i])) {
            pick = cand[i];
            break;
        }
    }
    snprintf(used, usedsz, "%s", pick);
    void *h = dlopen(pick, RTLD_NOW | RTLD_GLOBAL);
    if (!h) {
        p11_log("cannot load %s: %s", pick, dlerror());
        /* e.g. an unprivileged host (p11-kit as another user) and a pyenv CPython in root's home */
        if (access(home, R_OK | X_OK) != 0)
            p11_log("the venv's Python home %s (pyvenv.cfg 'home') is not accessible to uid %u: %s; "
                    "this user cannot run that CPython %d.%d: make it readable, or build the module "
                    "with a CPython %d.%d this user can read",
                    home, (unsigned)geteuid(), strerror(errno), PY_MAJOR_VERSION, PY_MINOR_VERSION,
                    PY_MAJOR_VERSION, PY_MINOR_VERSION);
    }
    return h;
}

/* ------------------------------------------------------------------ */
/* bootstrap                                                           */
/* ------------------------------------------------------------------ */
static int parse_version(const char *v, int *maj, int *min)
{
    return v && sscanf(v, "%d.%d", maj, min) == 2;
}

/* Step 1: a CPython already in the process? Returns 0 ok (sets host_mode),
 * -1 refuse. */
static int foreign_python_check(void)
{
    void *isinit = dlsym(RTLD_DEFAULT, "Py_IsInitialized");
    if (!isinit)
        return 0;
    const char *(*getver)(void) = (const char *(*)(void))dlsym(RTLD_DEFAULT, "Py_GetVersion");
    const char *ver = getver ? getver() : NULL;
    int maj = -1, min = -1;
    Dl_info di;
    const char *lib = (dladdr(isinit, &di) && di.dli_fname) ? di.dli_fname : "?";
    if (!parse_version(ver, &maj, &min) || maj != PY_MAJOR_VERSION || min != PY_MINOR_VERSION) {
        char v[32];
        snprintf(v, sizeof v, "%s", ver ? ver : "unknown");
        char *sp = strchr(v, ' ');
        if (sp)
            *sp = '\0';
        p11_log("this module was built for CPython %d.%d, but the process already runs "
                "CPython %s (%s); one CPython per process: refusing C_Initialize",
                PY_MAJOR_VERSION, PY_MINOR_VERSION, v, lib);
        return -1;
    }
    if (((int (*)(void))isinit)())
        host_mode = 1;
    return 0;
}

static void venv_site_packages(const char *venv, char *out, size_t outsz)
{
    snprintf(out, outsz, "%s/lib/python%d.%d/site-packages", venv, PY_MAJOR_VERSION,
             PY_MINOR_VERSION);
}

/* host mode: site.addsitedir(<venv site-packages>); GIL held */
static void host_add_site(const char *venv)
{
    char sp[PATH_MAX];
    venv_site_packages(venv, sp, sizeof sp);
    PyObject *site = PY(PyImport_ImportModule)("site");
    PyObject *fn = site ? PY(PyObject_GetAttrString)(site, "addsitedir") : NULL;
    PyObject *arg = fn ? PY(PyUnicode_DecodeFSDefault)(sp) : NULL;
    PyObject *r = arg ? PY(PyObject_CallOneArg)(fn, arg) : NULL;
    if (!r) {
        p11_log("site.addsitedir(%s) failed:", sp);
        PY(PyErr_WriteUnraisable)(NULL);
    }
    if (r)
        PY(Py_DecRef)(r);
    if (arg)
        PY(Py_DecRef)(arg);
    if (fn)
        PY(Py_DecRef)(fn);
    if (site)
        PY(Py_DecRef)(site);
}

/* Signals belong to the host. install_signal_handlers = 0 covers
 * Py_InitializeFromConfig, but the first `import signal` (the stdlib, urllib3,
 * loguru all do it) installs CPython's SIGINT handler when SIGINT is SIG_DFL:
 * Ctrl-C would then raise KeyboardInterrupt inside a call instead of ending
 * the host. So import it here, once, with SIGINT set to SIG_IGN (CPython then
 * leaves it alone), and put back every disposition and the mask exactly as
 * they were. A SIGINT in that window is ignored rather than turned into an
 * exception.
 * The raw syscall reads and writes the kernel's record as is: glibc's
 * sigaction() would add SA_RESTORER to a SIG_DFL it puts back. */
#if defined(__linux__) && (defined(__x86_64__) || defined(__aarch64__))
#include <sys/syscall.h>
struct ksigaction {
    void *handler;
    unsigned long flags;
    void *restorer;
    unsigned long mask;
};
static int ksig(int sig, const struct ksigaction *act, struct ksigaction *old)
{
    return (int)syscall(SYS_rt_sigaction, sig, act, old, sizeof(unsigned long));
}
#define KSIG_HANDLER(a) ((a).handler)
#define KSIG_SAME(a, b) ((a).handler == (b).handler && (a).flags == (b).flags && \
                         (a).restorer == (b).restorer && (a).mask == (b).mask)
#else
#define ksigaction sigaction
#define KSIG_HANDLER(a) ((a).sa_handler)
static int ksig(int sig, const struct sigaction *act, struct sigaction *old)
{
    return sigaction(sig, act, old);
}
#define KSIG_SAME(a, b) ((a).sa_handler == (b).sa_handler && (a).sa_flags == (b).sa_flags)
#endif

/* GIL held */
static void owned_import_signal_keeping_host_signals(void)
{
    static struct ksigaction saved[NSIG];
    static char have[NSIG];
    sigset_t mask;
    pthread_sigmask(SIG_BLOCK, NULL, &mask);
    for (int i = 1; i < NSIG; i++)
        have[i] = ksig(i, NULL, &saved[i]) == 0;
    if (have[SIGINT] && (void *)KSIG_HANDLER(saved[SIGINT]) == (void *)SIG_DFL) {
        struct ksigaction ign;
        memset(&ign, 0, sizeof ign);
        *(void **)&KSIG_HANDLER(ign) = (void *)SIG_IGN;
        ksig(SIGINT, &ign, NULL);
    }
    PyObject *m = PY(PyImport_ImportModule)("signal");
    if (!m)
        PY(PyErr_WriteUnraisable)(NULL);
    else
        PY(Py_DecRef)(m);
    for (int i = 1; i < NSIG; i++) {
        struct ksigaction now;
        if (!have[i] || i == SIGKILL || i == SIGSTOP || ksig(i, NULL, &now) != 0)
            continue;
        if (!KSIG_SAME(now, saved[i]))
            ksig(i, &saved[i], NULL);
    }
    pthread_sigmask(SIG_SETMASK, &mask, NULL);
}

/* owned mode: sys.stdout = sys.stderr (stdout belongs to the host; the
 * embedded one is block-buffered and never flushed). GIL held. */
static void owned_protect_stdout(void)
{
    PyObject *sys = PY(PyImport_ImportModule)("sys");
    PyObject *err = sys ? PY(PyObject_GetAttrString)(sys, "stderr") : NULL;
    if (!err || PY(PyObject_SetAttrString)(sys, "stdout", err) < 0)
        PY(PyErr_WriteUnraisable)(NULL);
    if (err)
        PY(Py_DecRef)(err);
    if (sys)
        PY(Py_DecRef)(sys);
}

static int start_owned(const char *venv)
{
    char home[PATH_MAX], lib[PATH_MAX], exe[PATH_MAX];
    int maj, min;
    if (read_cfg(venv, home, sizeof home, &maj, &min) < 0)
        return -1;
    if (maj != PY_MAJOR_VERSION || min != PY_MINOR_VERSION) {
        p11_log("%s/pyvenv.cfg is a Python %d.%d venv, but this module was built for %d.%d",
                venv, maj, min, PY_MAJOR_VERSION, PY_MINOR_VERSION);
        return -1;
    }
    void *h = open_libpython(home, lib, sizeof lib);
    if (!h)
        return -1;
    if (py_load_table(h, lib) < 0)
        return -1;
    if (PY(Py_IsInitialized)()) {
        /* loaded but already initialized through another path: treat as host */
        host_mode = 1;
        return 0;
    }
    static const char *const names[] = {"python3", "python" Py_STRINGIFY(PY_MAJOR_VERSION) "." Py_STRINGIFY(PY_MINOR_VERSION), "python"};
    exe[0] = '\0';
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(exe, sizeof exe, "%s/bin/%s", venv, names[i]);
        if (file_exists(exe))
            break;
    }

    PyConfig cfg;
    PY(PyConfig_InitIsolatedConfig)(&cfg);
    cfg.install_signal_handlers = 0; /* host signals stay as they are */
    PyStatus st = PY(PyConfig_SetBytesString)(&cfg, &cfg.program_name, exe);
    if (!PY(PyStatus_Exception)(st))
        st = PY(PyConfig_SetBytesString)(&cfg, &cfg.executable, exe);
    if (!PY(PyStatus_Exception)(st))
        st = PY(Py_InitializeFromConfig)(&cfg);
    PY(PyConfig_Clear)(&cfg);
    if (PY(PyStatus_Exception)(st)) {
        p11_log("Python initialization failed (%s): %s%s%s", lib, st.func ? st.func : "",
                st.func ? ": " : "", st.err_msg ? st.err_msg : "exit");
        interp_broken = 1;
        return -1;
    }
    owned_protect_stdout();
    owned_import_signal_keeping_host_signals();
    /* release the GIL: keep the init state pinned to this thread */
    PyThreadState *ts = PY(PyEval_SaveThread)();
    (void)ts; /* known to PyGILState for this thread; used through Ensure */
    if (!atfork_done) {
        pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
        atfork_done = 1;
    }
    return 0;
}

static int import_dispatcher(void)
{
    struct gil s;
    int rc = -1;
    gil_enter(&s);
    PyObject *mod = PY(PyImport_ImportModule)(P11_DISPATCH_MODULE);
    PyObject *fn = mod ? PY(PyObject_GetAttrString)(mod, P11_DISPATCH_ATTR) : NULL;
    if (!fn) {
        p11_log("cannot load %s.%s:", P11_DISPATCH_MODULE, P11_DISPATCH_ATTR);
        PY(PyErr_WriteUnraisable)(NULL);
        goto out;
    }
    for (unsigned i = 0; i < P11_N_FUNCTIONS; i++) {
        if (!idx_obj[i] && !(idx_obj[i] = PY(PyLong_FromUnsignedLongLong)(i))) {
            PY(PyErr_WriteUnraisable)(NULL);
            PY(Py_DecRef)(fn);
            goto out;
        }
    }
    entry_fn = fn;
    rc = 0;
    if (!host_mode) { /* our atfork handlers wait for quiet; the Python hook need not */
        PyObject *fs = PY(PyImport_ImportModule)(P11_FORKSAFE_MODULE);
        PyObject *one = fs ? PY(PyLong_FromUnsignedLongLong)(1) : NULL;
        if (!one || PY(PyObject_SetAttrString)(fs, "C_HANDLERS", one) < 0)
            PY(PyErr_WriteUnraisable)(NULL);
        if (one)
            PY(Py_DecRef)(one);
        if (fs)
            PY(Py_DecRef)(fs);
    }
out:
    if (mod)
        PY(Py_DecRef)(mod);
    gil_leave(&s);
    return rc;
}

static int make_tkey(void)
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

/* called with init_mu held */
static int bootstrap(void)
{
    if (interp_broken)
        return -1;
    if (!interp_up) {
        if (foreign_python_check() < 0)
            return -1;
        char venv[PATH_MAX];
        int have_venv = find_venv(venv, sizeof venv) == 0;
        if (host_mode) {
            if (py_load_table(RTLD_DEFAULT, "the process") < 0)
                return -1;
            if (make_tkey() < 0)
                return -1;
            interp_up = 1;
            if (have_venv) {
                struct gil s;
                gil_enter(&s);
                host_add_site(venv);
                gil_leave(&s);
            }
        } else {
            if (!have_venv)
                return -1;
            if (make_tkey() < 0)
                return -1;
            if (start_owned(venv) < 0)
                return -1;
            interp_up = 1;
            if (host_mode && have_venv) {
                struct gil s;
                gil_enter(&s);
                host_add_site(venv);
                gil_leave(&s);
            }
        }
    }
    if (!entry_fn && import_dispatcher() < 0)
        return -1;
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
    int rc = bootstrap();
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
