/*
 * libnethsm_pkcs11.so, interpreter bootstrap (docs/embedding.md §2): at the
 * first C_Initialize, refuse a foreign CPython minor, borrow a same-minor one
 * (host mode) or find the venv and its libpython and start an isolated
 * interpreter we own, then import the dispatcher. Py_Finalize is never called.
 */
#include "shim.h"

#ifndef P11_PY_SONAME
#error "P11_PY_SONAME (e.g. \"libpython3.11.so.1.0\") must be defined at build time"
#endif
#ifndef P11_MULTIARCH
#define P11_MULTIARCH ""
#endif
#ifndef P11_BUILD_VENV
#define P11_BUILD_VENV ""
#endif

static int interp_broken; /* Py_InitializeFromConfig failed: never retry   */

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
    owned_install_atfork();
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

/* called with init_mu held */
int p11_bootstrap(void)
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
