"""General-purpose functions (PKCS#11 3.0 §5.4): C_Initialize, C_Finalize, C_GetInfo, and the
legacy parallel-function calls (§5.20)."""

from __future__ import annotations

import ctypes
import sys

from p11nethsm.log import logger

import p11nethsm
from p11nethsm import forksafe, library, logging_setup
from p11nethsm.ck.cdata import blank_padded
from p11nethsm.ck.constants import CKF
from p11nethsm.ck.errors import (
    ArgumentsBad,
    CantLock,
    FunctionFailed,
    FunctionNotParallel,
)
from p11nethsm.ck.structs import CK_C_INITIALIZE_ARGS, CK_INFO
from p11nethsm.config.loader import ConfigError, load
from p11nethsm.handlers import HOOKS
from p11nethsm.handlers import handler

CRYPTOKI_VERSION = (3, 0)  # the interface C_GetInterface hands out first (CK_FUNCTION_LIST_3_0)
MANUFACTURER = "Nitrokey"
DESCRIPTION = "p11nethsm: PKCS#11 for NetHSM"


def _version_tuple(text: str) -> tuple[int, int]:
    parts = (text.split(".") + ["0", "0"])[:2]
    try:
        return int(parts[0]) & 0xFF, int("".join(c for c in parts[1] if c.isdigit()) or 0) & 0xFF
    except ValueError:
        return 0, 0


def _build_info() -> bytes:
    info = CK_INFO()
    info.cryptokiVersion.major, info.cryptokiVersion.minor = CRYPTOKI_VERSION
    info.manufacturerID[:] = blank_padded(MANUFACTURER, 32)
    info.flags = 0
    info.libraryDescription[:] = blank_padded(DESCRIPTION, 32)
    info.libraryVersion.major, info.libraryVersion.minor = _version_tuple(p11nethsm.__version__)
    return bytes(info)


_INFO = _build_info()
_INFO_SIZE = len(_INFO)


def parse_init_args(p_init_args: int) -> bool:
    """Validate CK_C_INITIALIZE_ARGS (spec §5.4 C_Initialize); return whether threads are allowed.

    - pReserved must be NULL (ArgumentsBad);
    - the four mutex callbacks are all set or all NULL (ArgumentsBad);
    - callbacks without CKF_OS_LOCKING_OK: CantLock (we only lock with OS primitives); with it,
      the callbacks are ignored;
    - CKF_LIBRARY_CANT_CREATE_OS_THREADS: no background threads.
    """
    if not p_init_args:
        return True
    args = CK_C_INITIALIZE_ARGS.from_address(p_init_args)
    if args.pReserved:
        raise ArgumentsBad("CK_C_INITIALIZE_ARGS.pReserved must be NULL")
    fns = [args.CreateMutex, args.DestroyMutex, args.LockMutex, args.UnlockMutex]
    n = sum(1 for f in fns if f)
    if n not in (0, 4):
        raise ArgumentsBad("the mutex callbacks must be all set or all NULL")
    flags = CKF(args.flags)
    if n == 4 and not flags & CKF.OS_LOCKING_OK:
        raise CantLock("application mutex callbacks are not supported; set CKF_OS_LOCKING_OK")
    return not flags & CKF.LIBRARY_CANT_CREATE_OS_THREADS


@handler
def C_Initialize(pInitArgs):
    lifecycle = library.LIFECYCLE
    with lifecycle.lock:  # the whole flow: one C_Initialize / C_Finalize at a time
        lifecycle.check("initialize")  # CRYPTOKI_ALREADY_INITIALIZED, from the chart
        threads = parse_init_args(pInitArgs)
        config = _load_config()
        forksafe.prepare()
        lib = library.initialize(config, threads_allowed=threads)
        logger.info(
            "p11nethsm {} initialized: {} slot(s) from {}; threads {}",
            p11nethsm.__version__, len(lib.slots), ", ".join(config.sources),
            "allowed" if lib.threads_allowed else "disabled",
        )
        if config.metrics_file:
            # lazy: an optional feature, loaded only when configured (the start-up's memory
            # budget, bench P3); grimp still sees this import, so the layer contract covers it
            from p11nethsm import metrics

            HOOKS.set_metrics(metrics.configure(config, lib, threads=lib.threads_allowed))


def _load_config():
    """The configuration, with logging set up from it; FunctionFailed with the reason if not."""
    try:
        result = load()
    except ConfigError as exc:
        logging_setup.configure_fallback("Info")
        logger.error("C_Initialize failed: {}", exc)
        raise FunctionFailed(str(exc)) from None
    try:
        logging_setup.configure(result.config)
    except OSError as exc:  # log_file checked at load, but its directory can go away since
        logging_setup.configure_fallback("Info")
        problem = f"configuration error: key 'log_file': {result.config.log_file}: {exc.strerror or exc}"
        logger.error("C_Initialize failed: {}", problem)
        raise FunctionFailed(problem) from None
    for warning in result.warnings:
        logger.warning("configuration: {}", warning)
    _warn_insecure(result.config)
    return result.config


def _warn_insecure(config) -> None:
    """The start-up warning of `danger_insecure_cert` (README, configuration reference): from
    the config alone."""
    for slot in config.slots:
        for inst in slot.instances:
            if inst.danger_insecure_cert:
                logger.warning("slot {!r}: {}: danger_insecure_cert is set: the certificate of this "
                               "NetHSM is not checked", slot.label, inst.url)


@handler
def C_Finalize(pReserved):
    if pReserved:
        raise ArgumentsBad("pReserved must be NULL")
    with library.LIFECYCLE.lock:
        library.LIFECYCLE.check("finalize")  # CRYPTOKI_NOT_INITIALIZED, from the chart
        metrics = sys.modules.get("p11nethsm.metrics")  # loaded only if C_Initialize started it
        if metrics is not None and metrics.current() is not None:
            HOOKS.set_metrics(None)
            metrics.shutdown()  # the last write, while the instances' health is still known
        library.finalize()
    logger.info("p11nethsm finalized")


@handler
def C_GetInfo(pInfo):
    if not pInfo:
        raise ArgumentsBad("pInfo is NULL")
    ctypes.memmove(pInfo, _INFO, _INFO_SIZE)


@handler
def C_GetFunctionStatus(hSession):
    library.get_library().session(hSession)
    raise FunctionNotParallel()


@handler
def C_CancelFunction(hSession):
    library.get_library().session(hSession)
    raise FunctionNotParallel()
