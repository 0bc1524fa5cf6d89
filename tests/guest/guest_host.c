/* A C host that checks the module is a good guest (no PKCS#11 header: the function list is
 * addressed by each function's position in p11nethsm/ck/functions.py, passed as -DIDX_<name>=<i>).
 *
 *   guest_host signals MODULE SLOT PIN LABEL   dispositions of 1..31 and the signal mask, before
 *                                              C_Initialize vs while initialized (after a sign) vs
 *                                              after C_Finalize; prints each difference
 *   guest_host stall MODULE SLOT [handler]     C_Initialize, then C_GetTokenInfo against a peer
 *                                              that never answers; the test sends SIGINT. With
 *                                              "handler" the host has its own SIGINT handler
 *                                              (exit status 42), else SIG_DFL.
 *   guest_host process MODULE SLOT PIN LABEL   the rest of the process state a library must leave
 *                                              alone: locale, umask, cwd, environment, flags of
 *                                              fds 0-2, resource limits; before vs after
 *                                              init + sign + finalize
 *   guest_host sigthread MODULE SLOT PIN LABEL a host thread waits for SIGUSR1; after the module
 *                                              started its health-check thread (the slot's first
 *                                              instance is down) the main thread blocks SIGUSR1
 *                                              and sends 200 to the process: every one must be
 *                                              handled in the host's thread, none in the module's
 *   guest_host init MODULE SLOT                C_Initialize; prints its rv; C_Finalize if it was OK
 *   guest_host fork MODULE SLOT PIN LABEL NFORKS THREADS SPACING_US
 *                                              C_Initialize, THREADS threads make their first
 *                                              calls and keep signing; meanwhile NFORKS children
 *                                              are forked SPACING_US apart; each child must get
 *                                              CKR_CRYPTOKI_NOT_INITIALIZED, then C_Initialize,
 *                                              log in, sign and finalize within CHILD_LIMIT s.
 *
 * Results: "RESULT ..." lines and "FAIL ..." lines on stderr; exit 0 = pass.
 */
#define _GNU_SOURCE 1
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <locale.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

typedef unsigned long CK_ULONG;
typedef CK_ULONG CK_RV;
typedef struct { unsigned char major, minor; } CK_VERSION;
typedef struct { CK_VERSION version; void *fns[68]; } CK_FUNCTION_LIST;
typedef struct { void *create, *destroy, *lock, *unlock; CK_ULONG flags; void *reserved; } CK_C_INITIALIZE_ARGS;
typedef struct { CK_ULONG type; void *pValue; CK_ULONG ulValueLen; } CK_ATTRIBUTE;
typedef struct { CK_ULONG mechanism; void *pParameter; CK_ULONG ulParameterLen; } CK_MECHANISM;
typedef struct { unsigned char b[88]; } CK_INFO;
typedef struct { unsigned char b[208]; } CK_TOKEN_INFO;

#define CKR_OK 0x0UL
#define CKR_GENERAL_ERROR 0x5UL
#define CKR_USER_ALREADY_LOGGED_IN 0x100UL
#define CKR_TOKEN_NOT_PRESENT 0xE0UL
#define CKR_CRYPTOKI_NOT_INITIALIZED 0x190UL
#define CKF_OS_LOCKING_OK 0x2UL
#define CKF_SERIAL_SESSION 0x4UL
#define CKU_USER 1UL
#define CKA_CLASS 0x0UL
#define CKA_LABEL 0x3UL
#define CKO_PRIVATE_KEY 0x3UL
#define CKM_ECDSA 0x1041UL
#define CHILD_LIMIT 60

typedef CK_RV (*fn_getlist)(CK_FUNCTION_LIST **);
typedef CK_RV (*fn_ptr)(void *);
typedef CK_RV (*fn_open)(CK_ULONG, CK_ULONG, void *, void *, CK_ULONG *);
typedef CK_RV (*fn_h)(CK_ULONG);
typedef CK_RV (*fn_login)(CK_ULONG, CK_ULONG, const unsigned char *, CK_ULONG);
typedef CK_RV (*fn_sp)(CK_ULONG, void *);
typedef CK_RV (*fn_find_init)(CK_ULONG, CK_ATTRIBUTE *, CK_ULONG);
typedef CK_RV (*fn_find)(CK_ULONG, CK_ULONG *, CK_ULONG, CK_ULONG *);
typedef CK_RV (*fn_sign_init)(CK_ULONG, CK_MECHANISM *, CK_ULONG);
typedef CK_RV (*fn_sign)(CK_ULONG, const unsigned char *, CK_ULONG, unsigned char *, CK_ULONG *);

static CK_FUNCTION_LIST *F;
static CK_ULONG SLOT;
static const char *PIN, *LABEL;
#define FN(type, name) ((type)F->fns[IDX_##name])

static void load(const char *path)
{
    void *lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        fprintf(stderr, "FAIL dlopen %s\n", dlerror());
        exit(1);
    }
    fn_getlist gl = (fn_getlist)dlsym(lib, "C_GetFunctionList");
    if (!gl || gl(&F) != CKR_OK) {
        fprintf(stderr, "FAIL C_GetFunctionList\n");
        exit(1);
    }
}

static CK_RV initialize(void)
{
    CK_C_INITIALIZE_ARGS ia = {0};
    ia.flags = CKF_OS_LOCKING_OK;
    return FN(fn_ptr, C_Initialize)(&ia);
}

/* open, log in, find LABEL, sign 32 bytes with ECDSA, close: 0 or the failing step's rv */
static CK_RV sign_once(const char **step)
{
    CK_ULONG h = 0, key = 0, n = 0, siglen = 256;
    unsigned char data[32], sig[256];
    memset(data, 0x5a, sizeof data);
    CK_ULONG cls = CKO_PRIVATE_KEY;
    CK_ATTRIBUTE tmpl[2] = {{CKA_CLASS, &cls, sizeof cls}, {CKA_LABEL, (void *)LABEL, strlen(LABEL)}};
    CK_MECHANISM mech = {CKM_ECDSA, NULL, 0};
    CK_RV rv;
    *step = "C_OpenSession";
    if ((rv = FN(fn_open, C_OpenSession)(SLOT, CKF_SERIAL_SESSION, NULL, NULL, &h)) != CKR_OK)
        return rv;
    *step = "C_Login";
    rv = FN(fn_login, C_Login)(h, CKU_USER, (const unsigned char *)PIN, strlen(PIN));
    if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN)
        goto out;
    *step = "C_FindObjectsInit";
    if ((rv = FN(fn_find_init, C_FindObjectsInit)(h, tmpl, 2)) != CKR_OK)
        goto out;
    *step = "C_FindObjects";
    rv = FN(fn_find, C_FindObjects)(h, &key, 1, &n);
    FN(fn_h, C_FindObjectsFinal)(h);
    if (rv != CKR_OK)
        goto out;
    if (n != 1) {
        *step = "C_FindObjects (no key)";
        rv = CKR_GENERAL_ERROR;
        goto out;
    }
    *step = "C_SignInit";
    if ((rv = FN(fn_sign_init, C_SignInit)(h, &mech, key)) != CKR_OK)
        goto out;
    *step = "C_Sign";
    if ((rv = FN(fn_sign, C_Sign)(h, data, sizeof data, sig, &siglen)) != CKR_OK)
        goto out;
    if (siglen != 64) {
        *step = "C_Sign (length)";
        rv = CKR_GENERAL_ERROR;
    }
out:
    FN(fn_h, C_CloseSession)(h);
    return rv;
}

/* ------------------------------------------------------------------ signals */

struct sigstate {
    struct sigaction act[32];
    sigset_t mask;
};

static void snapshot(struct sigstate *s)
{
    for (int i = 1; i < 32; i++)
        sigaction(i, NULL, &s->act[i]);
    pthread_sigmask(SIG_BLOCK, NULL, &s->mask);
}

static int compare(const char *when, const struct sigstate *a, const struct sigstate *b)
{
    int diffs = 0;
    for (int i = 1; i < 32; i++) {
        const struct sigaction *x = &a->act[i], *y = &b->act[i];
        int same = x->sa_handler == y->sa_handler && x->sa_flags == y->sa_flags;
        for (int j = 1; same && j < 32; j++)
            same = sigismember(&x->sa_mask, j) == sigismember(&y->sa_mask, j);
        if (!same) {
            fprintf(stderr, "FAIL %s: signal %d (%s) disposition changed: handler %p -> %p, flags %#x -> %#x\n",
                    when, i, strsignal(i), (void *)x->sa_handler, (void *)y->sa_handler,
                    (unsigned)x->sa_flags, (unsigned)y->sa_flags);
            diffs++;
        }
        if (sigismember(&a->mask, i) != sigismember(&b->mask, i)) {
            fprintf(stderr, "FAIL %s: signal %d (%s) %s the mask\n", when, i, strsignal(i),
                    sigismember(&b->mask, i) ? "added to" : "removed from");
            diffs++;
        }
    }
    return diffs;
}

static void host_usr1(int sig) { (void)sig; }

static int mode_signals(void)
{
    /* a host with some settings of its own, which must survive as well as the defaults */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = host_usr1;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGUSR1, &sa, NULL);
    signal(SIGHUP, SIG_IGN);
    sigset_t block;
    sigemptyset(&block);
    sigaddset(&block, SIGUSR2);
    pthread_sigmask(SIG_BLOCK, &block, NULL);

    struct sigstate before, during, after;
    snapshot(&before);
    CK_RV rv = initialize();
    if (rv != CKR_OK) {
        fprintf(stderr, "FAIL C_Initialize 0x%lx\n", rv);
        return 1;
    }
    const char *step = "";
    if ((rv = sign_once(&step)) != CKR_OK) {
        fprintf(stderr, "FAIL %s 0x%lx\n", step, rv);
        return 1;
    }
    snapshot(&during);
    if ((rv = FN(fn_ptr, C_Finalize)(NULL)) != CKR_OK) {
        fprintf(stderr, "FAIL C_Finalize 0x%lx\n", rv);
        return 1;
    }
    snapshot(&after);
    int diffs = compare("after init+sign", &before, &during) + compare("after finalize", &before, &after);
    fprintf(stderr, "RESULT signals_compared=31 differences=%d\n", diffs);
    if (diffs)
        return 1;
    fprintf(stderr, "RESULT ok\n");
    return 0;
}

/* ------------------------------------------------------------------ process state */

extern char **environ;

static void process_state(char *out, size_t n)
{
    size_t off = 0;
#define ADD(...) off += (size_t)snprintf(out + off, off < n ? n - off : 0, __VA_ARGS__)
    ADD("locale=%s\n", setlocale(LC_ALL, NULL));
    mode_t m = umask(022);
    umask(m);
    ADD("umask=%o\n", (unsigned)m);
    char cwd[4096];
    ADD("cwd=%s\n", getcwd(cwd, sizeof cwd) ? cwd : "?");
    for (char **e = environ; *e; e++)
        ADD("env %s\n", *e);
    for (int fd = 0; fd < 3; fd++)
        ADD("fd%d fl=%#x fd=%#x\n", fd, fcntl(fd, F_GETFL), fcntl(fd, F_GETFD));
    static const int lims[] = {RLIMIT_NOFILE, RLIMIT_STACK, RLIMIT_CORE, RLIMIT_AS, RLIMIT_NPROC};
    for (size_t i = 0; i < sizeof lims / sizeof lims[0]; i++) {
        struct rlimit rl;
        getrlimit(lims[i], &rl);
        ADD("rlimit%d=%llu/%llu\n", lims[i], (unsigned long long)rl.rlim_cur, (unsigned long long)rl.rlim_max);
    }
#undef ADD
}

static int mode_process(void)
{
    static char before[1 << 16], after[1 << 16];
    process_state(before, sizeof before);
    CK_RV rv = initialize();
    const char *step = "C_Initialize";
    if (rv == CKR_OK)
        rv = sign_once(&step);
    if (rv == CKR_OK && (rv = FN(fn_ptr, C_Finalize)(NULL)) != CKR_OK)
        step = "C_Finalize";
    if (rv != CKR_OK) {
        fprintf(stderr, "FAIL %s 0x%lx\n", step, rv);
        return 1;
    }
    process_state(after, sizeof after);
    if (strcmp(before, after) != 0) {
        fprintf(stderr, "FAIL process state changed\n--- before\n%s--- after\n%s", before, after);
        return 1;
    }
    fprintf(stderr, "RESULT ok\n");
    return 0;
}

/* ------------------------------------------------------------------ signals and our threads */

static volatile int usr1_host, usr1_other;
static pid_t catcher_tid;

static void on_usr1(int sig)
{
    (void)sig;
    if ((pid_t)syscall(SYS_gettid) == catcher_tid)
        usr1_host++;
    else
        usr1_other++;
}

static void *catcher(void *arg)
{
    (void)arg;
    catcher_tid = (pid_t)syscall(SYS_gettid);
    for (;;)
        pause();
    return NULL;
}

static int count_tasks(void)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task", getpid());
    char cmd[128];
    snprintf(cmd, sizeof cmd, "ls %s | wc -l", path);
    FILE *f = popen(cmd, "r");
    int n = 0;
    if (f) {
        if (fscanf(f, "%d", &n) != 1)
            n = 0;
        pclose(f);
    }
    return n;
}

static int mode_sigthread(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGUSR1, &sa, NULL);
    pthread_t t;
    pthread_create(&t, NULL, catcher, NULL);
    CK_RV rv = initialize();
    const char *step = "C_Initialize";
    CK_TOKEN_INFO ti;
    for (int i = 0; rv == CKR_OK && i < 20; i++) {
        FN(fn_sp, C_GetTokenInfo)(SLOT, &ti); /* the first instance fails: fail-over */
        if ((rv = sign_once(&step)) != CKR_TOKEN_NOT_PRESENT)
            break;
        rv = CKR_OK;
        usleep(250000);
    }
    if (rv != CKR_OK) {
        fprintf(stderr, "FAIL %s 0x%lx\n", step, rv);
        return 1;
    }
    int tasks = 0;
    for (int i = 0; i < 100 && (tasks = count_tasks()) <= 2; i++)
        usleep(100000);
    fprintf(stderr, "RESULT tasks=%d\n", tasks);
    if (tasks <= 2) {
        fprintf(stderr, "FAIL the module started no thread\n");
        return 1;
    }
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    for (int i = 0; i < 200; i++) {
        kill(getpid(), SIGUSR1);
        usleep(2000);
    }
    usleep(200000);
    fprintf(stderr, "RESULT usr1_in_host_thread=%d usr1_in_module_threads=%d\n", usr1_host, usr1_other);
    FN(fn_ptr, C_Finalize)(NULL);
    if (usr1_other || !usr1_host)
        return 1;
    fprintf(stderr, "RESULT ok\n");
    return 0;
}

/* ------------------------------------------------------------------ stall + SIGINT */

static void host_int(int sig)
{
    (void)sig;
    static const char m[] = "RESULT host handler ran\n";
    (void)!write(2, m, sizeof m - 1);
    _exit(42);
}

static int mode_stall(int with_handler)
{
    if (with_handler) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = host_int;
        sigaction(SIGINT, &sa, NULL);
    }
    CK_RV rv = initialize();
    if (rv != CKR_OK) {
        fprintf(stderr, "FAIL C_Initialize 0x%lx\n", rv);
        return 1;
    }
    fprintf(stderr, "RESULT stalling\n");
    CK_TOKEN_INFO ti;
    rv = FN(fn_sp, C_GetTokenInfo)(SLOT, &ti);
    /* only reached when SIGINT did not end the host */
    fprintf(stderr, "RESULT call_returned=0x%lx\n", rv);
    return 3;
}

/* ------------------------------------------------------------------ fork under load */

static volatile int stop;
static int thread_fail;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

static void *loader(void *arg)
{
    (void)arg;
    while (!__atomic_load_n(&stop, __ATOMIC_ACQUIRE)) {
        const char *step = "";
        CK_RV rv = sign_once(&step);
        if (rv != CKR_OK) {
            pthread_mutex_lock(&mu);
            if (thread_fail++ < 5)
                fprintf(stderr, "FAIL parent thread: %s 0x%lx\n", step, rv);
            pthread_mutex_unlock(&mu);
        }
    }
    return NULL;
}

static int child_body(void)
{
    alarm(CHILD_LIMIT); /* SIG_DFL: a hung child dies of SIGALRM */
    CK_INFO info;
    CK_RV rv = FN(fn_ptr, C_GetInfo)(&info);
    if (rv != CKR_CRYPTOKI_NOT_INITIALIZED) {
        fprintf(stderr, "FAIL child %d: C_GetInfo before C_Initialize 0x%lx\n", getpid(), rv);
        return 10;
    }
    if ((rv = initialize()) != CKR_OK) {
        fprintf(stderr, "FAIL child %d: C_Initialize 0x%lx\n", getpid(), rv);
        return 11;
    }
    const char *step = "";
    if ((rv = sign_once(&step)) != CKR_OK) {
        fprintf(stderr, "FAIL child %d: %s 0x%lx\n", getpid(), step, rv);
        return 12;
    }
    if ((rv = FN(fn_ptr, C_Finalize)(NULL)) != CKR_OK) {
        fprintf(stderr, "FAIL child %d: C_Finalize 0x%lx\n", getpid(), rv);
        return 13;
    }
    return 0;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int mode_fork(int nforks, int nthreads, long spacing_us)
{
    CK_RV rv = initialize();
    if (rv != CKR_OK) {
        fprintf(stderr, "FAIL C_Initialize 0x%lx\n", rv);
        return 1;
    }
    pthread_t t[64];
    if (nthreads > 64)
        nthreads = 64;
    for (int i = 0; i < nthreads; i++)
        pthread_create(&t[i], NULL, loader, NULL);
    pid_t kids[1024];
    double started[1024], worst_fork = 0;
    if (nforks > 1024)
        nforks = 1024;
    for (int i = 0; i < nforks; i++) {
        if (spacing_us)
            usleep((useconds_t)(spacing_us / 2 + rand() % (spacing_us + 1)));
        double t0 = now();
        pid_t pid = fork();
        if (pid == 0)
            _exit(child_body());
        if (now() - t0 > worst_fork)
            worst_fork = now() - t0;
        kids[i] = pid;
        started[i] = t0;
    }
    int ok = 0, hung = 0, failed = 0;
    double worst = 0;
    for (int i = 0; i < nforks; i++) {
        int status = 0;
        if (kids[i] < 0) {
            failed++;
            continue;
        }
        waitpid(kids[i], &status, 0);
        double took = now() - started[i];
        if (took > worst)
            worst = took;
        if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
            ok++;
        else if (WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM) {
            hung++;
            fprintf(stderr, "FAIL child %d hung (killed after %d s)\n", kids[i], CHILD_LIMIT);
        } else {
            failed++;
            fprintf(stderr, "FAIL child %d status %#x\n", kids[i], status);
        }
    }
    __atomic_store_n(&stop, 1, __ATOMIC_RELEASE);
    for (int i = 0; i < nthreads; i++)
        pthread_join(t[i], NULL);
    if ((rv = FN(fn_ptr, C_Finalize)(NULL)) != CKR_OK)
        fprintf(stderr, "FAIL parent C_Finalize 0x%lx\n", rv);
    fprintf(stderr, "RESULT forks=%d ok=%d hung=%d failed=%d parent_thread_failures=%d worst_child_s=%.2f worst_fork_ms=%.1f\n",
            nforks, ok, hung, failed, thread_fail, worst, worst_fork * 1e3);
    if (ok != nforks || thread_fail || rv != CKR_OK)
        return 1;
    fprintf(stderr, "RESULT ok\n");
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: see the source\n");
        return 2;
    }
    const char *mode = argv[1];
    load(argv[2]);
    SLOT = strtoul(argv[3], NULL, 10);
    if (strcmp(mode, "signals") == 0 && argc == 6) {
        PIN = argv[4];
        LABEL = argv[5];
        return mode_signals();
    }
    if (strcmp(mode, "process") == 0 && argc == 6) {
        PIN = argv[4];
        LABEL = argv[5];
        return mode_process();
    }
    if (strcmp(mode, "sigthread") == 0 && argc == 6) {
        PIN = argv[4];
        LABEL = argv[5];
        return mode_sigthread();
    }
    if (strcmp(mode, "init") == 0) {
        CK_RV rv = initialize();
        fprintf(stderr, "RESULT C_Initialize=0x%lx\n", rv);
        if (rv == CKR_OK)
            FN(fn_ptr, C_Finalize)(NULL);
        return 0;
    }
    if (strcmp(mode, "stall") == 0)
        return mode_stall(argc > 4 && strcmp(argv[4], "handler") == 0);
    if (strcmp(mode, "fork") == 0 && argc == 9) {
        PIN = argv[4];
        LABEL = argv[5];
        srand((unsigned)getpid());
        return mode_fork(atoi(argv[6]), atoi(argv[7]), atol(argv[8]));
    }
    fprintf(stderr, "bad mode or arguments\n");
    return 2;
}
