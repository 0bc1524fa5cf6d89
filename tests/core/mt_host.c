/* A small C host for the built module (no PKCS#11 header: the function list is addressed by
 * the position of each function in p11nethsm/ck/functions.py, passed as -DIDX_<name>=<i>).
 *
 *   mt_host mt    MODULE SLOT PIN THREADS ITERATIONS   8 threads open/login/info/close at once
 *   mt_host bench MODULE SLOT N                        C_GetSessionInfo N times, prints calls/s
 *   mt_host init  MODULE SLOT 0                        prints C_Initialize time and RSS growth
 *
 * Prints "ok ..." and exits 0 when every call returned what the spec allows, else "FAIL ...".
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef unsigned long CK_ULONG;
typedef CK_ULONG CK_RV;
typedef struct { unsigned char major, minor; } CK_VERSION;
typedef struct { CK_VERSION version; void *fns[68]; } CK_FUNCTION_LIST;
typedef struct { void *create, *destroy, *lock, *unlock; CK_ULONG flags; void *reserved; } CK_C_INITIALIZE_ARGS;
typedef struct { CK_ULONG slotID, state, flags, ulDeviceError; } CK_SESSION_INFO;
typedef struct { unsigned char b[88]; } CK_INFO;
typedef struct { unsigned char b[112]; } CK_SLOT_INFO;
typedef struct { unsigned char b[208]; } CK_TOKEN_INFO;

#define CKR_OK 0x0UL
#define CKR_USER_ALREADY_LOGGED_IN 0x100UL
#define CKS_RW_USER_FUNCTIONS 3UL
#define CKF_OS_LOCKING_OK 0x2UL
#define CKF_SERIAL_SESSION 0x4UL
#define CKF_RW_SESSION 0x2UL
#define CKU_USER 1UL

typedef CK_RV (*fn_getlist)(CK_FUNCTION_LIST **);
typedef CK_RV (*fn_ptr)(void *);
typedef CK_RV (*fn_open)(CK_ULONG, CK_ULONG, void *, void *, CK_ULONG *);
typedef CK_RV (*fn_h)(CK_ULONG);
typedef CK_RV (*fn_login)(CK_ULONG, CK_ULONG, const unsigned char *, CK_ULONG);
typedef CK_RV (*fn_hp)(CK_ULONG, void *);
typedef CK_RV (*fn_sp)(CK_ULONG, void *);

static CK_FUNCTION_LIST *F;
static CK_ULONG SLOT;
static const char *PIN;
static int ITER;
static int failures;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static long rss_kb(void)
{
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
            resident = 0;
        fclose(f);
    }
    return resident * 4;
}

#define FN(type, name) ((type)F->fns[IDX_##name])

static void fail(const char *what, CK_RV rv)
{
    pthread_mutex_lock(&lock);
    if (failures++ < 20)
        fprintf(stdout, "FAIL %s rv=0x%lx\n", what, rv);
    pthread_mutex_unlock(&lock);
}

static void *worker(void *arg)
{
    (void)arg;
    for (int i = 0; i < ITER; i++) {
        CK_ULONG h = 0;
        CK_RV rv = FN(fn_open, C_OpenSession)(SLOT, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &h);
        if (rv != CKR_OK) { fail("C_OpenSession", rv); continue; }
        rv = FN(fn_login, C_Login)(h, CKU_USER, (const unsigned char *)PIN, strlen(PIN));
        if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN) fail("C_Login", rv);
        CK_SESSION_INFO si;
        rv = FN(fn_hp, C_GetSessionInfo)(h, &si);
        if (rv != CKR_OK) fail("C_GetSessionInfo", rv);
        else if (si.state != CKS_RW_USER_FUNCTIONS || si.slotID != SLOT) fail("session state", si.state);
        CK_INFO info;
        if ((rv = FN(fn_ptr, C_GetInfo)(&info)) != CKR_OK) fail("C_GetInfo", rv);
        CK_SLOT_INFO slot;
        if ((rv = FN(fn_sp, C_GetSlotInfo)(SLOT, &slot)) != CKR_OK) fail("C_GetSlotInfo", rv);
        CK_TOKEN_INFO tok;
        if ((rv = FN(fn_sp, C_GetTokenInfo)(SLOT, &tok)) != CKR_OK) fail("C_GetTokenInfo", rv);
        if ((rv = FN(fn_h, C_CloseSession)(h)) != CKR_OK) fail("C_CloseSession", rv);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 5) { fprintf(stderr, "usage: see source\n"); return 2; }
    const char *mode = argv[1];
    void *lib = dlopen(argv[2], RTLD_NOW | RTLD_LOCAL);
    if (!lib) { fprintf(stdout, "FAIL dlopen %s\n", dlerror()); return 1; }
    fn_getlist gl = (fn_getlist)dlsym(lib, "C_GetFunctionList");
    CK_RV rv = gl(&F);
    if (rv != CKR_OK) { fprintf(stdout, "FAIL C_GetFunctionList 0x%lx\n", rv); return 1; }
    CK_C_INITIALIZE_ARGS ia = {0};
    ia.flags = CKF_OS_LOCKING_OK;
    long rss0 = rss_kb();
    struct timespec i0, i1;
    clock_gettime(CLOCK_MONOTONIC, &i0);
    if ((rv = FN(fn_ptr, C_Initialize)(&ia)) != CKR_OK) { fprintf(stdout, "FAIL C_Initialize 0x%lx\n", rv); return 1; }
    clock_gettime(CLOCK_MONOTONIC, &i1);
    if (strcmp(mode, "init") == 0)
        fprintf(stdout, "init C_Initialize %.1f ms, RSS +%.1f MiB\n",
                ((i1.tv_sec - i0.tv_sec) + (i1.tv_nsec - i0.tv_nsec) / 1e9) * 1e3, (rss_kb() - rss0) / 1024.0);
    SLOT = strtoul(argv[3], NULL, 10);
    if (strcmp(mode, "mt") == 0 && argc == 7) {
        PIN = argv[4];
        int nthreads = atoi(argv[5]);
        ITER = atoi(argv[6]);
        pthread_t t[64];
        for (int i = 0; i < nthreads; i++) pthread_create(&t[i], NULL, worker, NULL);
        for (int i = 0; i < nthreads; i++) pthread_join(t[i], NULL);
    } else if (strcmp(mode, "bench") == 0) {
        long n = atol(argv[4]);
        CK_ULONG h = 0;
        if ((rv = FN(fn_open, C_OpenSession)(SLOT, CKF_SERIAL_SESSION, NULL, NULL, &h)) != CKR_OK) fail("open", rv);
        CK_SESSION_INFO si;
        struct timespec a, b;
        clock_gettime(CLOCK_MONOTONIC, &a);
        for (long i = 0; i < n; i++)
            if (FN(fn_hp, C_GetSessionInfo)(h, &si) != CKR_OK) { fail("C_GetSessionInfo", 1); break; }
        clock_gettime(CLOCK_MONOTONIC, &b);
        double s = (b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9;
        fprintf(stdout, "bench C_GetSessionInfo %.0f calls/s %.3f us/call\n", n / s, s / n * 1e6);
    } else if (strcmp(mode, "init") == 0) {
    } else {
        fprintf(stderr, "bad mode\n");
        return 2;
    }
    if ((rv = FN(fn_ptr, C_Finalize)(NULL)) != CKR_OK) fail("C_Finalize", rv);
    if (failures) { fprintf(stdout, "FAIL %d failures\n", failures); return 1; }
    fprintf(stdout, "ok\n");
    return 0;
}
