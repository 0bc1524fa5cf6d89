/* A C host that races threads against each other through the built module (issue 10, defect 7).
 * No PKCS#11 header: functions are addressed by their position in p11nethsm/ck/functions.py,
 * passed as -DIDX_<name>=<i>.
 *
 *   race_host share    MODULE SLOT PIN LABEL THREADS ITERATIONS
 *       THREADS threads C_SignInit + C_Sign (CKM_ECDSA) on ONE shared session.
 *   race_host finalize MODULE SLOT PIN LABEL THREADS ROUNDS
 *       THREADS threads open/sign/find/close in a loop while the main thread calls C_Finalize
 *       (ROUNDS times: initialize, let them run, finalize under them, let them run, re-initialize).
 *
 * Prints one "rv FUNCTION 0xRV COUNT" line per (function, return value) seen, then "ok" or
 * "FAIL ..." on stdout; exit 0 only when every return value is one the spec allows there.
 * stderr is left to the module (the test checks it stays empty).
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef unsigned long CK_ULONG;
typedef CK_ULONG CK_RV;
typedef struct { unsigned char major, minor; } CK_VERSION;
typedef struct { CK_VERSION version; void *fns[68]; } CK_FUNCTION_LIST;
typedef struct { void *create, *destroy, *lock, *unlock; CK_ULONG flags; void *reserved; } CK_C_INITIALIZE_ARGS;
typedef struct { CK_ULONG type; void *pValue; CK_ULONG ulValueLen; } CK_ATTRIBUTE;
typedef struct { CK_ULONG mechanism; void *pParameter; CK_ULONG ulParameterLen; } CK_MECHANISM;
typedef struct { CK_ULONG slotID, state, flags, ulDeviceError; } CK_SESSION_INFO;

#define CKR_OK 0x0UL
#define CKR_GENERAL_ERROR 0x5UL
#define CKR_OPERATION_ACTIVE 0x90UL
#define CKR_OPERATION_NOT_INITIALIZED 0x91UL
#define CKR_SESSION_CLOSED 0xB0UL
#define CKR_SESSION_HANDLE_INVALID 0xB3UL
#define CKR_USER_ALREADY_LOGGED_IN 0x100UL
#define CKR_CRYPTOKI_NOT_INITIALIZED 0x190UL
#define CKR_CRYPTOKI_ALREADY_INITIALIZED 0x191UL
#define CKF_OS_LOCKING_OK 0x2UL
#define CKF_SERIAL_SESSION 0x4UL
#define CKF_RW_SESSION 0x2UL
#define CKU_USER 1UL
#define CKA_CLASS 0x0UL
#define CKA_LABEL 0x3UL
#define CKO_PRIVATE_KEY 3UL
#define CKM_ECDSA 0x1041UL

typedef CK_RV (*fn_getlist)(CK_FUNCTION_LIST **);
typedef CK_RV (*fn_ptr)(void *);
typedef CK_RV (*fn_open)(CK_ULONG, CK_ULONG, void *, void *, CK_ULONG *);
typedef CK_RV (*fn_h)(CK_ULONG);
typedef CK_RV (*fn_login)(CK_ULONG, CK_ULONG, const unsigned char *, CK_ULONG);
typedef CK_RV (*fn_hp)(CK_ULONG, void *);
typedef CK_RV (*fn_findinit)(CK_ULONG, CK_ATTRIBUTE *, CK_ULONG);
typedef CK_RV (*fn_find)(CK_ULONG, CK_ULONG *, CK_ULONG, CK_ULONG *);
typedef CK_RV (*fn_mechkey)(CK_ULONG, CK_MECHANISM *, CK_ULONG);
typedef CK_RV (*fn_sign)(CK_ULONG, const unsigned char *, CK_ULONG, unsigned char *, CK_ULONG *);

static CK_FUNCTION_LIST *F;
#define FN(type, name) ((type)F->fns[IDX_##name])

static CK_ULONG SLOT;
static const char *PIN, *LABEL;
static int ITER;
static volatile int stop;
static CK_ULONG shared_session, shared_key;

/* tally of (function, rv); "bad" counts values outside what the spec allows at that call */
#define MAXT 64
static struct { const char *fn; CK_RV rv; long n; } tally[MAXT];
static int ntally;
static long bad;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static void note(const char *fn, CK_RV rv, int allowed)
{
    pthread_mutex_lock(&lock);
    int i;
    for (i = 0; i < ntally; i++)
        if (tally[i].rv == rv && strcmp(tally[i].fn, fn) == 0)
            break;
    if (i == ntally && ntally < MAXT) {
        tally[i].fn = fn;
        tally[i].rv = rv;
        ntally++;
    }
    if (i < MAXT)
        tally[i].n++;
    if (!allowed)
        bad++;
    pthread_mutex_unlock(&lock);
}

static int in(CK_RV rv, const CK_RV *set)
{
    for (; *set != (CK_RV)-1; set++)
        if (rv == *set)
            return 1;
    return 0;
}

static CK_RV find_key(CK_ULONG h, CK_ULONG *key)
{
    CK_ULONG cls = CKO_PRIVATE_KEY, n = 0;
    CK_ATTRIBUTE t[2] = {{CKA_CLASS, &cls, sizeof cls}, {CKA_LABEL, (void *)LABEL, strlen(LABEL)}};
    CK_RV rv = FN(fn_findinit, C_FindObjectsInit)(h, t, 2);
    if (rv != CKR_OK)
        return rv;
    rv = FN(fn_find, C_FindObjects)(h, key, 1, &n);
    FN(fn_h, C_FindObjectsFinal)(h);
    if (rv == CKR_OK && n != 1)
        rv = 0xFFFFUL;
    return rv;
}

/* ---- share: one session, many threads ------------------------------------------------------ */
static void *share_worker(void *arg)
{
    (void)arg;
    static const CK_RV init_ok[] = {CKR_OK, CKR_OPERATION_ACTIVE, (CK_RV)-1};
    static const CK_RV sign_ok[] = {CKR_OK, CKR_OPERATION_ACTIVE, CKR_OPERATION_NOT_INITIALIZED, (CK_RV)-1};
    unsigned char data[32], sig[256];
    memset(data, 0x5a, sizeof data);
    for (int i = 0; i < ITER; i++) {
        CK_MECHANISM m = {CKM_ECDSA, NULL, 0};
        CK_RV rv = FN(fn_mechkey, C_SignInit)(shared_session, &m, shared_key);
        note("C_SignInit", rv, in(rv, init_ok));
        CK_ULONG len = sizeof sig;
        rv = FN(fn_sign, C_Sign)(shared_session, data, sizeof data, sig, &len);
        note("C_Sign", rv, in(rv, sign_ok));
    }
    return NULL;
}

/* ---- finalize: C_Finalize under running calls ---------------------------------------------- */
static const CK_RV gone[] = {CKR_OK, CKR_CRYPTOKI_NOT_INITIALIZED, CKR_SESSION_HANDLE_INVALID, CKR_SESSION_CLOSED,
                            (CK_RV)-1};
static const CK_RV gone_op[] = {CKR_OK, CKR_CRYPTOKI_NOT_INITIALIZED, CKR_SESSION_HANDLE_INVALID,
                                CKR_SESSION_CLOSED, CKR_OPERATION_NOT_INITIALIZED, (CK_RV)-1};

static void *final_worker(void *arg)
{
    (void)arg;
    unsigned char data[32], sig[256];
    memset(data, 0x3c, sizeof data);
    while (!stop) {
        CK_ULONG h = 0, key = 0, n = 0, objs[16];
        CK_RV rv = FN(fn_open, C_OpenSession)(SLOT, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &h);
        note("C_OpenSession", rv, in(rv, gone));
        if (rv != CKR_OK) {
            usleep(1000);
            continue;
        }
        rv = FN(fn_login, C_Login)(h, CKU_USER, (const unsigned char *)PIN, strlen(PIN));
        note("C_Login", rv, rv == CKR_USER_ALREADY_LOGGED_IN || in(rv, gone));
        CK_SESSION_INFO si;
        rv = FN(fn_hp, C_GetSessionInfo)(h, &si);
        note("C_GetSessionInfo", rv, in(rv, gone));
        rv = find_key(h, &key);
        note("find key", rv, in(rv, gone_op));
        CK_MECHANISM m = {CKM_ECDSA, NULL, 0};
        rv = FN(fn_mechkey, C_SignInit)(h, &m, key);
        note("C_SignInit", rv, in(rv, gone));
        CK_ULONG len = sizeof sig;
        rv = FN(fn_sign, C_Sign)(h, data, sizeof data, sig, &len);
        note("C_Sign", rv, in(rv, gone_op));
        rv = FN(fn_findinit, C_FindObjectsInit)(h, NULL, 0);
        note("C_FindObjectsInit", rv, in(rv, gone));
        rv = FN(fn_find, C_FindObjects)(h, objs, 16, &n);
        note("C_FindObjects", rv, in(rv, gone_op));
        rv = FN(fn_h, C_FindObjectsFinal)(h);
        note("C_FindObjectsFinal", rv, in(rv, gone_op));
        rv = FN(fn_h, C_CloseSession)(h);
        note("C_CloseSession", rv, in(rv, gone));
    }
    return NULL;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

int main(int argc, char **argv)
{
    if (argc != 8) {
        fprintf(stdout, "usage: see source\n");
        return 2;
    }
    const char *mode = argv[1];
    void *lib = dlopen(argv[2], RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        fprintf(stdout, "FAIL dlopen %s\n", dlerror());
        return 1;
    }
    SLOT = strtoul(argv[3], NULL, 10);
    PIN = argv[4];
    LABEL = argv[5];
    int nthreads = atoi(argv[6]);
    ITER = atoi(argv[7]);
    if (nthreads > 128)
        nthreads = 128;
    fn_getlist gl = (fn_getlist)dlsym(lib, "C_GetFunctionList");
    CK_RV rv = gl(&F);
    CK_C_INITIALIZE_ARGS ia = {0};
    ia.flags = CKF_OS_LOCKING_OK;
    if ((rv = FN(fn_ptr, C_Initialize)(&ia)) != CKR_OK) {
        fprintf(stdout, "FAIL C_Initialize 0x%lx\n", rv);
        return 1;
    }
    pthread_t t[128];
    if (strcmp(mode, "share") == 0) {
        rv = FN(fn_open, C_OpenSession)(SLOT, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &shared_session);
        if (rv == CKR_OK)
            rv = FN(fn_login, C_Login)(shared_session, CKU_USER, (const unsigned char *)PIN, strlen(PIN));
        if (rv == CKR_OK)
            rv = find_key(shared_session, &shared_key);
        if (rv != CKR_OK) {
            fprintf(stdout, "FAIL set-up 0x%lx\n", rv);
            return 1;
        }
        for (int i = 0; i < nthreads; i++)
            pthread_create(&t[i], NULL, share_worker, NULL);
        for (int i = 0; i < nthreads; i++)
            pthread_join(t[i], NULL);
        rv = FN(fn_ptr, C_Finalize)(NULL);
        note("C_Finalize", rv, rv == CKR_OK);
    } else if (strcmp(mode, "finalize") == 0) {
        for (int i = 0; i < nthreads; i++)
            pthread_create(&t[i], NULL, final_worker, NULL);
        for (int round = 0; round < ITER; round++) {
            sleep_ms(700 + (round * 137) % 400);  /* long enough for signatures, short enough to cut calls */
            rv = FN(fn_ptr, C_Finalize)(NULL);
            note("C_Finalize (main)", rv, rv == CKR_OK);
            sleep_ms(50);
            if (round + 1 < ITER) {
                rv = FN(fn_ptr, C_Initialize)(&ia);
                note("C_Initialize (main)", rv, rv == CKR_OK);
            }
        }
        stop = 1;
        for (int i = 0; i < nthreads; i++)
            pthread_join(t[i], NULL);
    } else {
        fprintf(stdout, "bad mode\n");
        return 2;
    }
    for (int i = 0; i < ntally; i++)
        fprintf(stdout, "rv %s 0x%lx %ld\n", tally[i].fn, tally[i].rv, tally[i].n);
    if (bad) {
        fprintf(stdout, "FAIL %ld calls returned a value the spec does not allow there\n", bad);
        return 1;
    }
    fprintf(stdout, "ok\n");
    return 0;
}
