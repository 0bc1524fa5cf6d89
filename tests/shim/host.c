/*
 * C host for the shim tests:  host <module.so> <mode> [args]
 * Results go to stderr as "RESULT key=value" lines; stdout is left to the
 * module (which must never write there). Exit 0 = pass.
 * Index macros (IDX_C_*) are passed by the test from functions.INDEX.
 */
#define _GNU_SOURCE 1
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

typedef unsigned long CK_ULONG, CK_RV;
typedef struct { unsigned char major, minor; } CK_VERSION;
typedef struct {
    CK_VERSION cryptokiVersion;
    unsigned char manufacturerID[32];
    CK_ULONG flags;
    unsigned char libraryDescription[32];
    CK_VERSION libraryVersion;
} CK_INFO;
typedef struct {
    CK_VERSION version;
    void *f[]; /* function pointers in CK_FUNCTION_LIST(_3_0) order */
} FLIST;
typedef struct { unsigned char *pInterfaceName; void *pFunctionList; CK_ULONG flags; } CK_INTERFACE;

typedef CK_RV (*fn1)(void *);
typedef CK_RV (*fn_gfl)(FLIST **);
typedef CK_RV (*fn_gil)(CK_INTERFACE *, CK_ULONG *);
typedef CK_RV (*fn_gi)(unsigned char *, CK_VERSION *, CK_INTERFACE **, CK_ULONG);

#ifndef N_FUNCTIONS
#error "pass -DN_FUNCTIONS"
#endif

static const char *mod_path;
static void *mod;
static FLIST *fl, *fl30;
static fn1 p_init, p_fin, p_info;

#define FAIL(...)                                                         \
    do {                                                                  \
        fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);              \
        fprintf(stderr, __VA_ARGS__);                                     \
        fprintf(stderr, "\n");                                            \
        exit(1);                                                          \
    } while (0)
#define CHECK_RV(expr, want)                                                               \
    do {                                                                                   \
        CK_RV _r = (expr);                                                                 \
        if (_r != (CK_RV)(want))                                                           \
            FAIL("%s returned 0x%lx, want 0x%lx", #expr, _r, (CK_RV)(want));              \
    } while (0)

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static long rss_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld kB", &v) == 1)
            break;
    if (f)
        fclose(f);
    return v;
}

static void load(void)
{
    mod = dlopen(mod_path, RTLD_NOW | RTLD_LOCAL);
    if (!mod)
        FAIL("dlopen: %s", dlerror());
    fn_gfl gfl = (fn_gfl)dlsym(mod, "C_GetFunctionList");
    if (!gfl)
        FAIL("no C_GetFunctionList");
    CHECK_RV(gfl(&fl), 0);
    fn_gi gi = (fn_gi)dlsym(mod, "C_GetInterface");
    CK_INTERFACE *ip = NULL;
    CK_VERSION v30 = {3, 0};
    if (!gi)
        FAIL("no C_GetInterface");
    CHECK_RV(gi((unsigned char *)"PKCS 11", &v30, &ip, 0), 0);
    fl30 = ip->pFunctionList;
    p_init = (fn1)fl->f[IDX_C_Initialize];
    p_fin = (fn1)fl->f[IDX_C_Finalize];
    p_info = (fn1)fl->f[IDX_C_GetInfo];
}

static void check_info(void)
{
    CK_INFO info;
    memset(&info, 0xAA, sizeof info);
    CHECK_RV(p_info(&info), 0);
    if (info.cryptokiVersion.major < 2 || info.cryptokiVersion.major > 3)
        FAIL("cryptokiVersion %d.%d", info.cryptokiVersion.major, info.cryptokiVersion.minor);
    int printable = 1;
    for (int i = 0; i < 32; i++)
        if (info.manufacturerID[i] < 0x20 || info.manufacturerID[i] > 0x7e)
            printable = 0;
    for (int i = 0; i < 32; i++)
        if (info.libraryDescription[i] < 0x20 || info.libraryDescription[i] > 0x7e)
            printable = 0;
    if (!printable)
        FAIL("CK_INFO strings not filled (blank-padded printable)");
    if (info.flags != 0)
        FAIL("CK_INFO.flags = 0x%lx, want 0", info.flags);
}

/* ---------------- modes ---------------- */

static int mode_exports(void)
{
    load();
    /* without C_Initialize */
    if (fl->version.major != 2 || fl->version.minor != 40)
        FAIL("C_GetFunctionList version %d.%d", fl->version.major, fl->version.minor);
    for (int i = 0; i < N_FUNCTIONS_240; i++)
        if (!fl->f[i])
            FAIL("2.40 list entry %d NULL", i);
    fn_gil gil = (fn_gil)dlsym(mod, "C_GetInterfaceList");
    fn_gi gi = (fn_gi)dlsym(mod, "C_GetInterface");
    if (!gil || !gi)
        FAIL("missing interface functions");
    CHECK_RV(((fn_gfl)dlsym(mod, "C_GetFunctionList"))(NULL), 0x7);
    CK_ULONG n = 0;
    CHECK_RV(gil(NULL, NULL), 0x7);
    CHECK_RV(gil(NULL, &n), 0);
    if (n != 2)
        FAIL("interface count %lu", n);
    CK_INTERFACE ifs[4];
    CK_ULONG small = 1;
    CHECK_RV(gil(ifs, &small), 0x150);
    if (small != 2)
        FAIL("BUFFER_TOO_SMALL count %lu", small);
    n = 4;
    CHECK_RV(gil(ifs, &n), 0);
    if (n != 2)
        FAIL("count %lu", n);
    int seen30 = 0, seen240 = 0;
    for (CK_ULONG i = 0; i < n; i++) {
        if (strcmp((char *)ifs[i].pInterfaceName, "PKCS 11") != 0)
            FAIL("interface name %s", ifs[i].pInterfaceName);
        FLIST *l = ifs[i].pFunctionList;
        int cnt = 0;
        if (l->version.major == 3 && l->version.minor == 0) {
            seen30 = 1;
            cnt = N_FUNCTIONS;
        } else if (l->version.major == 2 && l->version.minor == 40) {
            seen240 = 1;
            cnt = N_FUNCTIONS_240;
        } else
            FAIL("interface version %d.%d", l->version.major, l->version.minor);
        for (int k = 0; k < cnt; k++)
            if (!l->f[k])
                FAIL("interface %d.%d entry %d NULL", l->version.major, l->version.minor, k);
    }
    if (!seen30 || !seen240)
        FAIL("interfaces missing");
    CK_INTERFACE *ip = NULL;
    CHECK_RV(gi((unsigned char *)"PKCS 11", NULL, &ip, 0), 0);
    FLIST *l = ip->pFunctionList;
    if (l->version.major != 3 || l->version.minor != 0)
        FAIL("default interface %d.%d", l->version.major, l->version.minor);
    CHECK_RV(gi(NULL, NULL, &ip, 0), 0);
    if (((FLIST *)ip->pFunctionList)->version.major != 3)
        FAIL("NULL name default not 3.0");
    CK_VERSION v240 = {2, 40}, v30 = {3, 0}, v31 = {3, 1};
    CHECK_RV(gi((unsigned char *)"PKCS 11", &v240, &ip, 0), 0);
    l = ip->pFunctionList;
    if (l->version.major != 2 || l->version.minor != 40 || (void *)l != (void *)fl)
        FAIL("2.40 interface is not the C_GetFunctionList list");
    CHECK_RV(gi((unsigned char *)"PKCS 11", &v30, &ip, 0), 0);
    FLIST *l30 = ip->pFunctionList;
    CHECK_RV(gi((unsigned char *)"PKCS 11", &v31, &ip, 0), 0x7);
    CHECK_RV(gi((unsigned char *)"Vendor X", NULL, &ip, 0), 0x7);
    CHECK_RV(gi((unsigned char *)"PKCS 11", NULL, NULL, 0), 0x7);
    /* list entries are the exported symbols */
    if (l30->f[IDX_C_GetInfo] != dlsym(mod, "C_GetInfo") ||
        l30->f[IDX_C_MessageVerifyFinal] != dlsym(mod, "C_MessageVerifyFinal") ||
        fl->f[IDX_C_WaitForSlotEvent] != dlsym(mod, "C_WaitForSlotEvent"))
        FAIL("function list entries differ from exported symbols");
    /* before C_Initialize */
    CK_INFO info;
    CHECK_RV(p_info(&info), 0x190);
    CHECK_RV(p_fin(NULL), 0x190);
    CHECK_RV(((CK_RV(*)(CK_ULONG))l30->f[IDX_C_CloseAllSessions])(0), 0x190);
    CHECK_RV(((CK_RV(*)(CK_ULONG))l30->f[IDX_C_MessageVerifyFinal])(1), 0x190);
    return 0;
}

static int mode_basic(void)
{
    load();
    CK_INFO info;
    CHECK_RV(p_info(&info), 0x190);
    CHECK_RV(p_init(NULL), 0);
    CHECK_RV(p_init(NULL), 0x191);
    check_info();
    CHECK_RV(p_info(NULL), 0x7);
    CHECK_RV(p_fin(NULL), 0);
    CHECK_RV(p_info(&info), 0x190);
    CHECK_RV(p_init(NULL), 0);
    check_info();
    CHECK_RV(p_fin(NULL), 0);
    return 0;
}

/* ----- threads ----- */
struct worker {
    int calls;
    int bad;
    volatile int *stop;
};

static void *worker_fn(void *p)
{
    struct worker *w = p;
    CK_INFO info;
    for (int i = 0; (w->stop ? !*w->stop : i < w->calls); i++) {
        if (p_info(&info) != 0)
            w->bad++;
    }
    return NULL;
}

static void *one_call(void *p)
{
    CK_INFO info;
    *(CK_RV *)p = p_info(&info);
    return NULL;
}

static int short_lived(int total, int batch)
{
    int bad = 0;
    for (int done = 0; done < total; done += batch) {
        pthread_t t[64];
        CK_RV rv[64];
        for (int i = 0; i < batch; i++)
            if (pthread_create(&t[i], NULL, one_call, &rv[i]))
                FAIL("pthread_create");
        for (int i = 0; i < batch; i++) {
            pthread_join(t[i], NULL);
            if (rv[i] != 0)
                bad++;
        }
    }
    return bad;
}

static int mode_threads(void)
{
    load();
    CHECK_RV(p_init(NULL), 0);
    pthread_t t[8];
    struct worker w[8];
    for (int i = 0; i < 8; i++) {
        w[i] = (struct worker){.calls = 2000, .bad = 0, .stop = NULL};
        pthread_create(&t[i], NULL, worker_fn, &w[i]);
    }
    int bad = 0;
    for (int i = 0; i < 8; i++) {
        pthread_join(t[i], NULL);
        bad += w[i].bad;
    }
    if (bad)
        FAIL("%d failed calls in 8x2000", bad);
    bad = short_lived(40, 8); /* warm-up */
    long r0 = rss_kb();
    bad += short_lived(200, 8);
    long r1 = rss_kb();
    bad += short_lived(200, 8);
    long r2 = rss_kb();
    if (bad)
        FAIL("%d failed calls in short-lived threads", bad);
    fprintf(stderr, "RESULT rss_short_threads_kb=%ld,%ld,%ld\n", r0, r1, r2);
    if (r2 - r0 > 1024)
        FAIL("RSS grew %ld kB over 400 short-lived threads", r2 - r0);
    check_info();
    CHECK_RV(p_fin(NULL), 0);
    return 0;
}

/* ----- fork ----- */
static int child_body(void)
{
    CK_INFO info;
    CHECK_RV(p_info(&info), 0x190);
    CHECK_RV(p_init(NULL), 0);
    check_info();
    pthread_t t[2];
    struct worker w[2];
    for (int i = 0; i < 2; i++) {
        w[i] = (struct worker){.calls = 500, .bad = 0, .stop = NULL};
        pthread_create(&t[i], NULL, worker_fn, &w[i]);
    }
    for (int i = 0; i < 2; i++) {
        pthread_join(t[i], NULL);
        if (w[i].bad)
            FAIL("child worker failures");
    }
    CHECK_RV(p_fin(NULL), 0);
    return 0;
}

static int mode_fork(int nforks)
{
    load();
    CHECK_RV(p_init(NULL), 0);
    volatile int stop = 0;
    pthread_t t[2];
    struct worker w[2];
    for (int i = 0; i < 2; i++) {
        w[i] = (struct worker){.calls = 0, .bad = 0, .stop = &stop};
        pthread_create(&t[i], NULL, worker_fn, &w[i]);
    }
    usleep(20000);
    int ok = 0;
    double worst = 0;
    for (int k = 0; k < nforks; k++) {
        double t0 = now();
        pid_t pid = fork();
        if (pid < 0)
            FAIL("fork: %s", strerror(errno));
        if (pid == 0) {
            alarm(10);
            _exit(child_body());
        }
        int status = 0;
        for (;;) {
            pid_t r = waitpid(pid, &status, WNOHANG);
            if (r == pid)
                break;
            if (now() - t0 > 10.0) {
                kill(pid, SIGKILL);
                waitpid(pid, &status, 0);
                FAIL("child %d did not finish within 10 s", k);
            }
            usleep(1000);
        }
        double dt = now() - t0;
        if (dt > worst)
            worst = dt;
        if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
            ok++;
        else
            FAIL("child %d status 0x%x", k, status);
    }
    stop = 1;
    for (int i = 0; i < 2; i++) {
        pthread_join(t[i], NULL);
        if (w[i].bad)
            FAIL("parent worker failures: %d", w[i].bad);
    }
    check_info();
    CHECK_RV(p_fin(NULL), 0);
    fprintf(stderr, "RESULT fork_ok=%d/%d worst_child_s=%.3f\n", ok, nforks, worst);
    return ok == nforks ? 0 : 1;
}

/* ----- reload / cycles ----- */
static pthread_mutex_t lmu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t lcv = PTHREAD_COND_INITIALIZER;
static int lgo;
static void *lingering(void *p)
{
    CK_INFO info;
    *(CK_RV *)p = p_info(&info);
    pthread_mutex_lock(&lmu);
    while (!lgo)
        pthread_cond_wait(&lcv, &lmu);
    pthread_mutex_unlock(&lmu);
    return NULL; /* exits after the module was dlclose'd */
}

static int mode_reload(int cycles)
{
    load();
    CHECK_RV(p_init(NULL), 0);
    check_info();
    pthread_t t;
    CK_RV trv = 99;
    pthread_create(&t, NULL, lingering, &trv);
    usleep(50000);
    CHECK_RV(p_fin(NULL), 0);
    if (dlclose(mod))
        FAIL("dlclose");
    pthread_mutex_lock(&lmu);
    lgo = 1;
    pthread_cond_broadcast(&lcv);
    pthread_mutex_unlock(&lmu);
    pthread_join(t, NULL);
    if (trv != 0)
        FAIL("lingering thread call 0x%lx", trv);
    load();
    CHECK_RV(p_init(NULL), 0);
    check_info();
    CHECK_RV(p_fin(NULL), 0);
    long r0 = rss_kb();
    double worst = 0, t0 = now();
    for (int i = 0; i < cycles; i++) {
        double a = now();
        CHECK_RV(p_init(NULL), 0);
        CHECK_RV(p_fin(NULL), 0);
        double d = now() - a;
        if (d > worst)
            worst = d;
    }
    double total = now() - t0;
    long r1 = rss_kb();
    fprintf(stderr, "RESULT cycles=%d mean_us=%.1f worst_us=%.1f rss_delta_kb=%ld\n", cycles,
            total / cycles * 1e6, worst * 1e6, r1 - r0);
    /* fork after reload still works */
    CHECK_RV(p_init(NULL), 0);
    pid_t pid = fork();
    if (pid == 0) {
        alarm(10);
        _exit(child_body());
    }
    int st;
    waitpid(pid, &st, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st))
        FAIL("child after reload: 0x%x", st);
    CHECK_RV(p_fin(NULL), 0);
    return 0;
}

/* ----- measurements ----- */
static int mode_timing(void)
{
    long r0 = rss_kb();
    double t0 = now();
    load();
    double t1 = now();
    long r1 = rss_kb();
    CHECK_RV(p_init(NULL), 0);
    double t2 = now();
    long r2 = rss_kb();
    check_info();
    double t3 = now();
    long r3 = rss_kb();
    fprintf(stderr,
            "RESULT load_ms=%.3f load_rss_kb=%ld init_ms=%.2f init_rss_kb=%ld "
            "first_getinfo_ms=%.3f after_getinfo_rss_kb=%ld\n",
            (t1 - t0) * 1e3, r1 - r0, (t2 - t1) * 1e3, r2 - r1, (t3 - t2) * 1e3, r3 - r1);
    CHECK_RV(p_fin(NULL), 0);
    return 0;
}

struct bench {
    int calls;
    int bad;
};
static void *bench_fn(void *p)
{
    struct bench *b = p;
    CK_INFO info;
    for (int i = 0; i < b->calls; i++)
        if (p_info(&info))
            b->bad++;
    return NULL;
}

static int mode_bench(int total)
{
    load();
    CHECK_RV(p_init(NULL), 0);
    for (int nt = 1; nt <= 8; nt *= 8) {
        pthread_t t[8];
        struct bench b[8];
        double t0 = now();
        for (int i = 0; i < nt; i++) {
            b[i] = (struct bench){total / nt, 0};
            pthread_create(&t[i], NULL, bench_fn, &b[i]);
        }
        int bad = 0;
        for (int i = 0; i < nt; i++) {
            pthread_join(t[i], NULL);
            bad += b[i].bad;
        }
        double dt = now() - t0;
        if (bad)
            FAIL("bench failures");
        fprintf(stderr, "RESULT threads=%d calls_per_s=%.0f us_per_call=%.3f\n", nt, total / dt,
                dt / total * 1e6);
    }
    CHECK_RV(p_fin(NULL), 0);
    return 0;
}

static int mode_initfail(void)
{
    load();
    CHECK_RV(p_init(NULL), 0x5);
    CHECK_RV(p_init(NULL), 0x5);
    CK_INFO info;
    CHECK_RV(p_info(&info), 0x190);
    return 0;
}

/* dispatcher misbehaves (test package): raise, non-int, SystemExit, huge int */
static int mode_errors(void)
{
    load();
    CHECK_RV(p_init(NULL), 0);
    fn1 f;
    f = (fn1)fl->f[IDX_C_GetSlotInfo];
    CHECK_RV(((CK_RV(*)(CK_ULONG, void *))f)(1, NULL), 0x5); /* raises */
    CHECK_RV(((CK_RV(*)(CK_ULONG, void *))f)(2, NULL), 0x5); /* returns "x" */
    CHECK_RV(((CK_RV(*)(CK_ULONG, void *))f)(3, NULL), 0x5); /* SystemExit */
    CHECK_RV(((CK_RV(*)(CK_ULONG, void *))f)(4, NULL), 0x5); /* 2**70 */
    CHECK_RV(((CK_RV(*)(CK_ULONG, void *))f)(5, NULL), 0x5); /* -1 */
    /* argument marshalling: echo back */
    f = (fn1)fl->f[IDX_C_GetSlotList];
    CK_ULONG cnt = 0;
    CHECK_RV(((CK_RV(*)(unsigned char, void *, CK_ULONG *))f)(7, (void *)0x1234, &cnt), 0);
    if (cnt != 0x1234 + 1)
        FAIL("bbool/pointer marshalling: cnt=0x%lx", cnt);
    CK_RV (*ms)(CK_ULONG, void *, CK_ULONG, void *, CK_ULONG, void *, CK_ULONG, void *, CK_ULONG *) =
        (void *)fl30->f[IDX_C_EncryptMessage];
    CK_ULONG out = 0;
    CHECK_RV(ms(~0UL, (void *)1, 2, (void *)3, 4, (void *)5, 6, (void *)7, &out), 0);
    if (out != 9)
        FAIL("9-arg marshalling: %lu", out);
    check_info();
    CHECK_RV(p_fin(NULL), 0);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s module.so mode [n]\n", argv[0]);
        return 2;
    }
    mod_path = argv[1];
    const char *m = argv[2];
    int n = argc > 3 ? atoi(argv[3]) : 0;
    int rc;
    if (!strcmp(m, "exports"))
        rc = mode_exports();
    else if (!strcmp(m, "basic"))
        rc = mode_basic();
    else if (!strcmp(m, "threads"))
        rc = mode_threads();
    else if (!strcmp(m, "fork"))
        rc = mode_fork(n ? n : 20);
    else if (!strcmp(m, "reload"))
        rc = mode_reload(n ? n : 200);
    else if (!strcmp(m, "timing"))
        rc = mode_timing();
    else if (!strcmp(m, "bench"))
        rc = mode_bench(n ? n : 100000);
    else if (!strcmp(m, "initfail"))
        rc = mode_initfail();
    else if (!strcmp(m, "errors"))
        rc = mode_errors();
    else {
        fprintf(stderr, "unknown mode %s\n", m);
        return 2;
    }
    if (rc == 0)
        fprintf(stderr, "RESULT ok\n");
    return rc;
}
