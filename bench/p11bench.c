/*
 * p11bench: a small PKCS#11 benchmark harness that dlopens any module and uses only
 * C_GetFunctionList.  The PKCS#11 definitions below are written from the spec's facts
 * (type sizes, constants, function-list order); no third-party header is used.
 *
 * Usage: p11bench MODULE COMMAND [options]
 *   init                     dlopen + C_GetFunctionList + C_Initialize wall time and RSS growth
 *   percall  --fn F          calls/s of F (sessioninfo | getattr) with --threads N
 *   sign     --mech M        C_SignInit+C_Sign per second (M = ecdsa | eddsa | rsa) with --threads N
 *   find                     timed full C_FindObjects enumerations (--passes K); with --sync,
 *                            waits for a line on stdin before each pass (the driver reads the
 *                            emulator's request counters in between)
 * Options: --token LABEL (default: first slot with a token)  --pin PIN  --threads N
 *          --seconds S (measured)  --warmup W  --key LABEL  --batch B (find)  --msg-len L
 *          --rounds R (percall/sign: R measured windows in one process, one line each)
 *          --class C (find: template {CKA_CLASS = C}; default: the empty template)
 * Every result is one line on stdout starting with "RESULT " followed by JSON.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---------------------------------------------------------------- minimal PKCS#11 */
typedef unsigned long CK_ULONG;
typedef CK_ULONG CK_RV, CK_SLOT_ID, CK_SESSION_HANDLE, CK_OBJECT_HANDLE, CK_FLAGS,
    CK_USER_TYPE, CK_ATTRIBUTE_TYPE, CK_MECHANISM_TYPE, CK_OBJECT_CLASS;
typedef unsigned char CK_BYTE, CK_BBOOL;
typedef struct { CK_BYTE major, minor; } CK_VERSION;
typedef struct { CK_ATTRIBUTE_TYPE type; void *pValue; CK_ULONG ulValueLen; } CK_ATTRIBUTE;
typedef struct { CK_MECHANISM_TYPE mechanism; void *pParameter; CK_ULONG ulParameterLen; } CK_MECHANISM;
typedef struct { CK_SLOT_ID slotID; CK_ULONG state; CK_FLAGS flags; CK_ULONG ulDeviceError; } CK_SESSION_INFO;
typedef struct {
    void *CreateMutex, *DestroyMutex, *LockMutex, *UnlockMutex;
    CK_FLAGS flags;
    void *pReserved;
} CK_C_INITIALIZE_ARGS;
/* CK_TOKEN_INFO is 208 bytes on LP64; its first member is the 32-byte blank-padded label. */
typedef struct { unsigned char label[32]; unsigned char rest[176]; } CK_TOKEN_INFO_RAW;

#define CKR_OK 0x0UL
#define CKR_USER_ALREADY_LOGGED_IN 0x100UL
#define CKR_CRYPTOKI_ALREADY_INITIALIZED 0x191UL
#define CKF_RW_SESSION 0x2UL
#define CKF_SERIAL_SESSION 0x4UL
#define CKF_OS_LOCKING_OK 0x2UL
#define CKU_USER 1UL
#define CKA_CLASS 0x0UL
#define CKA_LABEL 0x3UL
#define CKA_KEY_TYPE 0x100UL
#define CKA_ID 0x102UL
#define CKO_PRIVATE_KEY 3UL
#define CKM_RSA_PKCS 0x1UL
#define CKM_ECDSA 0x1041UL
#define CKM_EDDSA 0x1057UL

typedef CK_RV (*fn_any)(void);
/* CK_FUNCTION_LIST: version, then the 68 v2.x functions in spec order. */
typedef struct {
    CK_VERSION version;
    CK_RV (*C_Initialize)(void *);
    CK_RV (*C_Finalize)(void *);
    CK_RV (*C_GetInfo)(void *);
    CK_RV (*C_GetFunctionList)(void *);
    CK_RV (*C_GetSlotList)(CK_BBOOL, CK_SLOT_ID *, CK_ULONG *);
    CK_RV (*C_GetSlotInfo)(CK_SLOT_ID, void *);
    CK_RV (*C_GetTokenInfo)(CK_SLOT_ID, void *);
    fn_any C_GetMechanismList, C_GetMechanismInfo, C_InitToken, C_InitPIN, C_SetPIN;
    CK_RV (*C_OpenSession)(CK_SLOT_ID, CK_FLAGS, void *, void *, CK_SESSION_HANDLE *);
    CK_RV (*C_CloseSession)(CK_SESSION_HANDLE);
    fn_any C_CloseAllSessions;
    CK_RV (*C_GetSessionInfo)(CK_SESSION_HANDLE, CK_SESSION_INFO *);
    fn_any C_GetOperationState, C_SetOperationState;
    CK_RV (*C_Login)(CK_SESSION_HANDLE, CK_USER_TYPE, const unsigned char *, CK_ULONG);
    fn_any C_Logout, C_CreateObject, C_CopyObject, C_DestroyObject, C_GetObjectSize;
    CK_RV (*C_GetAttributeValue)(CK_SESSION_HANDLE, CK_OBJECT_HANDLE, CK_ATTRIBUTE *, CK_ULONG);
    fn_any C_SetAttributeValue;
    CK_RV (*C_FindObjectsInit)(CK_SESSION_HANDLE, CK_ATTRIBUTE *, CK_ULONG);
    CK_RV (*C_FindObjects)(CK_SESSION_HANDLE, CK_OBJECT_HANDLE *, CK_ULONG, CK_ULONG *);
    CK_RV (*C_FindObjectsFinal)(CK_SESSION_HANDLE);
    fn_any C_EncryptInit, C_Encrypt, C_EncryptUpdate, C_EncryptFinal;
    fn_any C_DecryptInit, C_Decrypt, C_DecryptUpdate, C_DecryptFinal;
    fn_any C_DigestInit, C_Digest, C_DigestUpdate, C_DigestKey, C_DigestFinal;
    CK_RV (*C_SignInit)(CK_SESSION_HANDLE, CK_MECHANISM *, CK_OBJECT_HANDLE);
    CK_RV (*C_Sign)(CK_SESSION_HANDLE, const unsigned char *, CK_ULONG, unsigned char *, CK_ULONG *);
    fn_any C_SignUpdate, C_SignFinal, C_SignRecoverInit, C_SignRecover;
    fn_any C_VerifyInit, C_Verify, C_VerifyUpdate, C_VerifyFinal, C_VerifyRecoverInit, C_VerifyRecover;
    fn_any C_DigestEncryptUpdate, C_DecryptDigestUpdate, C_SignEncryptUpdate, C_DecryptVerifyUpdate;
    fn_any C_GenerateKey, C_GenerateKeyPair, C_WrapKey, C_UnwrapKey, C_DeriveKey;
    fn_any C_SeedRandom, C_GenerateRandom, C_GetFunctionStatus, C_CancelFunction, C_WaitForSlotEvent;
} CK_FUNCTION_LIST;

/* ---------------------------------------------------------------- helpers */
static CK_FUNCTION_LIST *F;
static const char *opt_token = NULL, *opt_pin = NULL, *opt_key = NULL, *opt_fn = "sessioninfo",
                  *opt_mech = "ecdsa";
static long opt_class = -1; /* find: CKA_CLASS to match, -1 = empty template */
static int opt_threads = 1, opt_passes = 2, opt_sync = 0, opt_batch = 100, opt_msg_len = -1,
           opt_rounds = 1;
static double opt_seconds = 3.0, opt_warmup = 0.5;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static long rss_kb(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    if (!f) return -1;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "VmRSS:", 6)) { kb = strtol(line + 6, NULL, 10); break; }
    fclose(f);
    return kb;
}

static void die_rv(const char *what, CK_RV rv) {
    printf("RESULT {\"error\": \"%s\", \"rv\": \"0x%lx\"}\n", what, rv);
    fflush(stdout);
    fprintf(stderr, "p11bench: %s failed: CKR 0x%lx\n", what, rv);
    _exit(2);
}
#define CK(call) do { CK_RV _rv = (call); if (_rv != CKR_OK) die_rv(#call, _rv); } while (0)

static void sleep_s(double s) {
    struct timespec ts = {(time_t)s, (long)((s - (time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {}
}

static double t_dlopen, t_getfl, t_init, cpu_init;
static long rss0, rss_dl, rss_init;

static void load(const char *path) {
    rss0 = rss_kb();
    double t0 = now();
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) { fprintf(stderr, "dlopen: %s\n", dlerror()); exit(2); }
    double t1 = now();
    rss_dl = rss_kb();
    CK_RV (*gfl)(CK_FUNCTION_LIST **) = (CK_RV (*)(CK_FUNCTION_LIST **))dlsym(h, "C_GetFunctionList");
    if (!gfl) { fprintf(stderr, "no C_GetFunctionList\n"); exit(2); }
    CK(gfl(&F));
    double t2 = now();
    double c2 = cpu_now();
    CK_C_INITIALIZE_ARGS args;
    memset(&args, 0, sizeof args);
    args.flags = CKF_OS_LOCKING_OK;
    CK_RV rv = F->C_Initialize(&args);
    if (rv != CKR_OK && rv != CKR_CRYPTOKI_ALREADY_INITIALIZED) die_rv("C_Initialize", rv);
    double t3 = now();
    cpu_init = cpu_now() - c2;
    rss_init = rss_kb();
    t_dlopen = t1 - t0; t_getfl = t2 - t1; t_init = t3 - t2;
}

static CK_SLOT_ID find_slot(void) {
    CK_ULONG n = 0;
    CK(F->C_GetSlotList(1, NULL, &n));
    if (n == 0) {
        CK_ULONG all = 0;
        F->C_GetSlotList(0, NULL, &all);
        fprintf(stderr, "no slot with a token (%lu slot(s) without one)\n", all);
        printf("RESULT {\"error\": \"no slot with a token\", \"slots\": %lu}\n", all);
        exit(2);
    }
    CK_SLOT_ID *slots = calloc(n, sizeof *slots);
    CK(F->C_GetSlotList(1, slots, &n));
    CK_SLOT_ID s = slots[0];
    if (opt_token) {
        size_t L = strlen(opt_token);
        int found = 0;
        for (CK_ULONG i = 0; i < n && !found; i++) {
            CK_TOKEN_INFO_RAW ti;
            if (F->C_GetTokenInfo(slots[i], &ti) != CKR_OK) continue;
            if (L <= 32 && !memcmp(ti.label, opt_token, L)) {
                int ok = 1;
                for (size_t j = L; j < 32; j++) if (ti.label[j] != ' ') ok = 0;
                if (ok) { s = slots[i]; found = 1; }
            }
        }
        if (!found) { fprintf(stderr, "token %s not found\n", opt_token); exit(2); }
    }
    free(slots);
    return s;
}

static CK_SLOT_ID g_slot;

static CK_SESSION_HANDLE open_session(void) {
    CK_SESSION_HANDLE h;
    CK(F->C_OpenSession(g_slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &h));
    return h;
}

static void login(CK_SESSION_HANDLE h) {
    if (!opt_pin) return;
    CK_RV rv = F->C_Login(h, CKU_USER, (const unsigned char *)opt_pin, strlen(opt_pin));
    if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN) die_rv("C_Login", rv);
}

static CK_OBJECT_HANDLE find_key(CK_SESSION_HANDLE h, const char *label) {
    CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
    CK_ATTRIBUTE t[2] = {{CKA_CLASS, &cls, sizeof cls}, {CKA_LABEL, (void *)label, label ? strlen(label) : 0}};
    CK(F->C_FindObjectsInit(h, t, label ? 2 : 1));
    CK_OBJECT_HANDLE o = 0;
    CK_ULONG n = 0;
    CK(F->C_FindObjects(h, &o, 1, &n));
    CK(F->C_FindObjectsFinal(h));
    if (n != 1) { fprintf(stderr, "private key %s not found\n", label ? label : "(any)"); exit(2); }
    return o;
}

/* ---------------------------------------------------------------- threaded loops */
typedef struct {
    _Alignas(64) _Atomic unsigned long count;
    CK_SESSION_HANDLE session;
    pthread_t tid;
    char pad[64];
} worker_t;

static worker_t *W;
static atomic_int stop_flag, go_flag;
static CK_OBJECT_HANDLE g_key;
static unsigned char g_msg[512];
static CK_ULONG g_msg_len;
static CK_MECHANISM_TYPE g_mech;

static void *loop_sessioninfo(void *arg) {
    worker_t *w = arg;
    CK_SESSION_INFO si;
    while (!atomic_load_explicit(&go_flag, memory_order_acquire)) {}
    while (!atomic_load_explicit(&stop_flag, memory_order_relaxed)) {
        CK_RV rv = F->C_GetSessionInfo(w->session, &si);
        if (rv != CKR_OK) die_rv("C_GetSessionInfo", rv);
        atomic_store_explicit(&w->count, w->count + 1, memory_order_relaxed);
    }
    return NULL;
}

static void *loop_getattr(void *arg) {
    worker_t *w = arg;
    unsigned char buf[256];
    CK_ULONG kt;
    while (!atomic_load_explicit(&go_flag, memory_order_acquire)) {}
    while (!atomic_load_explicit(&stop_flag, memory_order_relaxed)) {
        CK_ATTRIBUTE a[2] = {{CKA_KEY_TYPE, &kt, sizeof kt}, {CKA_ID, buf, sizeof buf}};
        CK_RV rv = F->C_GetAttributeValue(w->session, g_key, a, 2);
        if (rv != CKR_OK) die_rv("C_GetAttributeValue", rv);
        atomic_store_explicit(&w->count, w->count + 1, memory_order_relaxed);
    }
    return NULL;
}

static atomic_ulong sig_len_seen;

static void *loop_sign(void *arg) {
    worker_t *w = arg;
    unsigned char sig[1024];
    CK_MECHANISM m = {g_mech, NULL, 0};
    while (!atomic_load_explicit(&go_flag, memory_order_acquire)) {}
    while (!atomic_load_explicit(&stop_flag, memory_order_relaxed)) {
        CK_ULONG sl = sizeof sig;
        CK_RV rv = F->C_SignInit(w->session, &m, g_key);
        if (rv != CKR_OK) die_rv("C_SignInit", rv);
        rv = F->C_Sign(w->session, g_msg, g_msg_len, sig, &sl);
        if (rv != CKR_OK) die_rv("C_Sign", rv);
        atomic_store_explicit(&sig_len_seen, sl, memory_order_relaxed);
        atomic_store_explicit(&w->count, w->count + 1, memory_order_relaxed);
    }
    return NULL;
}

static unsigned long total(void) {
    unsigned long s = 0;
    for (int i = 0; i < opt_threads; i++) s += atomic_load_explicit(&W[i].count, memory_order_relaxed);
    return s;
}

/* Runs warmup, then opt_rounds measured windows of opt_seconds; prints one line per window. */
static void run_threads(void *(*fn)(void *), const char *what) {
    W = aligned_alloc(64, sizeof(worker_t) * opt_threads);
    memset(W, 0, sizeof(worker_t) * opt_threads);
    for (int i = 0; i < opt_threads; i++) W[i].session = open_session();
    for (int i = 0; i < opt_threads; i++) pthread_create(&W[i].tid, NULL, fn, &W[i]);
    atomic_store(&go_flag, 1);
    sleep_s(opt_warmup);
    for (int r = 0; r < opt_rounds; r++) {
        printf("MARK start\n"); /* the driver samples the emulator's CPU time at the marks */
        fflush(stdout);
        unsigned long c0 = total();
        double t0 = now(), u0 = cpu_now();
        sleep_s(opt_seconds);
        unsigned long c1 = total();
        double t1 = now(), u1 = cpu_now();
        printf("MARK end\n");
        printf("RESULT {\"cmd\": \"%s\", \"threads\": %d, \"round\": %d, \"ops\": %lu, \"seconds\": %.4f, "
               "\"per_sec\": %.1f, \"sig_len\": %lu, \"cpu_cores\": %.3f}\n",
               what, opt_threads, r, c1 - c0, t1 - t0, (c1 - c0) / (t1 - t0),
               atomic_load(&sig_len_seen), (u1 - u0) / (t1 - t0));
        fflush(stdout);
    }
    atomic_store(&stop_flag, 1);
    for (int i = 0; i < opt_threads; i++) pthread_join(W[i].tid, NULL);
    for (int i = 0; i < opt_threads; i++) F->C_CloseSession(W[i].session);
}

/* ---------------------------------------------------------------- commands */
static int cmd_init(void) {
    printf("RESULT {\"cmd\": \"init\", \"dlopen_ms\": %.3f, \"getfunctionlist_ms\": %.3f, "
           "\"initialize_ms\": %.3f, \"initialize_cpu_ms\": %.3f, \"rss_before_kb\": %ld, \"rss_after_dlopen_kb\": %ld, "
           "\"rss_after_init_kb\": %ld, \"rss_growth_init_kb\": %ld, \"rss_growth_total_kb\": %ld}\n",
           t_dlopen * 1e3, t_getfl * 1e3, t_init * 1e3, cpu_init * 1e3, rss0, rss_dl, rss_init, rss_init - rss_dl,
           rss_init - rss0);
    /* Time-to-first-useful-call too: slot list + open session (first use may import lazily). */
    double t0 = now(), u0 = cpu_now();
    g_slot = find_slot();
    CK_SESSION_HANDLE h = open_session();
    double t1 = now(), u1 = cpu_now();
    long rss1 = rss_kb();
    printf("RESULT {\"cmd\": \"first_session\", \"ms\": %.3f, \"cpu_ms\": %.3f, \"rss_kb\": %ld}\n",
           (t1 - t0) * 1e3, (u1 - u0) * 1e3, rss1);
    if (opt_pin) {
        t0 = now();
        login(h);
        t1 = now();
        printf("RESULT {\"cmd\": \"login\", \"ms\": %.3f, \"rss_kb\": %ld}\n", (t1 - t0) * 1e3, rss_kb());
    }
    F->C_CloseSession(h);
    return 0;
}

static int cmd_percall(void) {
    g_slot = find_slot();
    CK_SESSION_HANDLE h = open_session();
    login(h);
    if (!strcmp(opt_fn, "getattr")) {
        g_key = find_key(h, opt_key);
        run_threads(loop_getattr, "getattr");
    } else {
        run_threads(loop_sessioninfo, "sessioninfo");
    }
    F->C_CloseSession(h);
    return 0;
}

/* DER DigestInfo prefix for SHA-256 (RFC 8017 §9.2 note 1). */
static const unsigned char SHA256_DI[19] = {0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01,
                                            0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20};

static int cmd_sign(void) {
    g_slot = find_slot();
    CK_SESSION_HANDLE h = open_session();
    login(h);
    g_key = find_key(h, opt_key);
    for (size_t i = 0; i < sizeof g_msg; i++) g_msg[i] = (unsigned char)(0xA5 ^ i);
    if (!strcmp(opt_mech, "rsa")) {
        /* CKM_RSA_PKCS over DigestInfo(SHA-256) || 32-byte hash: 51 bytes, sent as mode PKCS1. */
        g_mech = CKM_RSA_PKCS;
        memcpy(g_msg, SHA256_DI, sizeof SHA256_DI);
        g_msg_len = opt_msg_len > 0 ? (CK_ULONG)opt_msg_len : 51;
    } else if (!strcmp(opt_mech, "eddsa")) {
        g_mech = CKM_EDDSA; /* pure Ed25519 over a 32-byte message, sent as mode EdDSA */
        g_msg_len = opt_msg_len > 0 ? (CK_ULONG)opt_msg_len : 32;
    } else {
        g_mech = CKM_ECDSA; /* a 32-byte hash, sent as mode ECDSA */
        g_msg_len = opt_msg_len > 0 ? (CK_ULONG)opt_msg_len : 32;
    }
    run_threads(loop_sign, !strcmp(opt_mech, "rsa") ? "sign_rsa" : !strcmp(opt_mech, "eddsa") ? "sign_eddsa" : "sign_ecdsa");
    F->C_CloseSession(h);
    return 0;
}

static int cmd_find(void) {
    g_slot = find_slot();
    CK_SESSION_HANDLE h = open_session();
    login(h);
    printf("RESULT {\"cmd\": \"ready\"}\n");
    fflush(stdout);
    CK_OBJECT_HANDLE *buf = calloc(opt_batch, sizeof *buf);
    char line[64];
    for (int p = 0; p < opt_passes; p++) {
        if (opt_sync && !fgets(line, sizeof line, stdin)) break;
        double t0 = now();
        CK_OBJECT_CLASS cls = (CK_OBJECT_CLASS)opt_class;
        CK_ATTRIBUTE tmpl = {CKA_CLASS, &cls, sizeof cls};
        CK(F->C_FindObjectsInit(h, opt_class >= 0 ? &tmpl : NULL, opt_class >= 0 ? 1 : 0));
        unsigned long found = 0, calls = 0;
        for (;;) {
            CK_ULONG n = 0;
            CK(F->C_FindObjects(h, buf, opt_batch, &n));
            calls++;
            found += n;
            if (n == 0) break;
        }
        CK(F->C_FindObjectsFinal(h));
        double t1 = now();
        printf("RESULT {\"cmd\": \"find\", \"pass\": %d, \"objects\": %lu, \"find_calls\": %lu, \"ms\": %.3f}\n",
               p, found, calls, (t1 - t0) * 1e3);
        fflush(stdout);
    }
    F->C_CloseSession(h);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s MODULE init|percall|sign|find [options]\n", argv[0]);
        return 2;
    }
    const char *module = argv[1], *cmd = argv[2];
    for (int i = 3; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--sync")) { opt_sync = 1; continue; }
        if (!v) { fprintf(stderr, "missing value for %s\n", a); return 2; }
        i++;
        if (!strcmp(a, "--token")) opt_token = v;
        else if (!strcmp(a, "--pin")) opt_pin = v;
        else if (!strcmp(a, "--key")) opt_key = v;
        else if (!strcmp(a, "--fn")) opt_fn = v;
        else if (!strcmp(a, "--mech")) opt_mech = v;
        else if (!strcmp(a, "--threads")) opt_threads = atoi(v);
        else if (!strcmp(a, "--seconds")) opt_seconds = atof(v);
        else if (!strcmp(a, "--warmup")) opt_warmup = atof(v);
        else if (!strcmp(a, "--passes")) opt_passes = atoi(v);
        else if (!strcmp(a, "--batch")) opt_batch = atoi(v);
        else if (!strcmp(a, "--msg-len")) opt_msg_len = atoi(v);
        else if (!strcmp(a, "--rounds")) opt_rounds = atoi(v);
        else if (!strcmp(a, "--class")) opt_class = atol(v);
        else { fprintf(stderr, "unknown option %s\n", a); return 2; }
    }
    if (opt_threads < 1) opt_threads = 1;
    load(module);
    int rc;
    if (!strcmp(cmd, "init")) rc = cmd_init();
    else if (!strcmp(cmd, "percall")) rc = cmd_percall();
    else if (!strcmp(cmd, "sign")) rc = cmd_sign();
    else if (!strcmp(cmd, "find")) rc = cmd_find();
    else { fprintf(stderr, "unknown command %s\n", cmd); return 2; }
    F->C_Finalize(NULL);
    fflush(stdout);
    /* Skip atexit/destructors of the module: some embed runtimes that dislike late teardown. */
    _exit(rc);
}
