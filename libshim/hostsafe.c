/*
 * libnethsm_pkcs11.so, host safety (docs/embedding.md §4-§6): the shim's own
 * messages go to stderr only; an interpreter we own gets sys.stdout = stderr
 * and imports `signal` without changing any disposition of the host; fork
 * handlers keep a child from inheriting the GIL or an import lock held by a
 * thread it does not have.
 */
#include "shim.h"

/* ------------------------------------------------------------------ */
/* logging: stderr only, one write per line                            */
/* ------------------------------------------------------------------ */
void p11_log(const char *fmt, ...)
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

void owned_install_atfork(void)
{
    static int atfork_done;
    if (!atfork_done) {
        pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
        atfork_done = 1;
    }
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
void owned_import_signal_keeping_host_signals(void)
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
void owned_protect_stdout(void)
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
