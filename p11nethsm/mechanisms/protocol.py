"""The output protocol of crypto operations, written once for sign/encrypt/decrypt/digest.

Spec 3.0 §5.2 + §5.8-5.13 (what the handlers rely on):
- a NULL output pointer is a size query: *pulLen = size (from the key size and the buffered input,
  before any network call), CKR_OK, the operation stays active;
- a buffer too small gives CKR_BUFFER_TOO_SMALL and *pulLen = size; the operation stays active.
  When the size is exact it is answered before doing the work; when it is only an upper bound
  (RSA decryption, CBC_PAD decryption) the work is done once and its result kept on the context,
  so the retry returns the same bytes without signing/decrypting twice or re-sending data;
- any other error ends the operation; success of the single-part call or of Final ends it.
"""

from __future__ import annotations

from p11nethsm.ck.cdata import output_bytes, read_bytes, read_ulong, write_ulong
from p11nethsm.ck.errors import ArgumentsBad, BufferTooSmall, KeyHandleInvalid, ObjectHandleInvalid

__all__ = ["run_single", "run_update", "run_final", "run_feed", "run_verify", "key_object"]


def key_object(session, handle: int):
    """The key of a crypto *Init (CKR_KEY_HANDLE_INVALID for an invalid handle)."""
    try:
        return session.slot.objects.get(session, handle)
    except ObjectHandleInvalid as exc:
        raise KeyHandleInvalid(str(exc)) from None


def _precheck(p_len: int, size: int) -> None:
    if read_ulong(p_len) < size:
        write_ulong(p_len, size)
        raise BufferTooSmall(size)


def _deliver(op, ctx, p_out: int, p_len: int, size, work) -> None:
    """The size query / BUFFER_TOO_SMALL / cached result protocol of the module docstring, once:
    `size()` answers a size query (no network), `work()` produces the output (kept on ctx).
    `ctx` is claimed by this call (Operation.claim): released, finished or aborted here."""
    try:
        if ctx.result is None:
            if not p_len:
                raise ArgumentsBad("NULL length pointer")
            if not p_out:
                write_ulong(p_len, size())
                op.release(ctx)
                return
            if ctx.exact:
                _precheck(p_len, size())
            ctx.result = work()
        output_bytes(p_out, p_len, ctx.result)
    except BufferTooSmall:
        op.release(ctx)
        raise
    except BaseException:
        op.abort(ctx)
        raise
    op.finish(ctx)


def run_single(op, p_data: int, data_len: int, p_out: int, p_len: int) -> None:
    """C_Sign / C_Encrypt / C_Decrypt / C_Digest."""
    ctx = op.single()
    try:
        data = read_bytes(p_data, data_len) if ctx.result is None else b""
    except BaseException:
        op.abort(ctx)
        raise
    _deliver(op, ctx, p_out, p_len, lambda: ctx.single_len(data), lambda: ctx.single(data))


def run_final(op, p_out: int, p_len: int) -> None:
    """C_SignFinal / C_EncryptFinal / C_DecryptFinal / C_DigestFinal."""
    ctx = op.claim()
    _deliver(op, ctx, p_out, p_len, ctx.out_len, ctx.final)


def run_update(op, p_in: int, in_len: int, p_out: int, p_len: int) -> None:
    """C_EncryptUpdate / C_DecryptUpdate (output-producing multi-part step)."""
    ctx = op.update_mark()
    try:
        data = read_bytes(p_in, in_len)
        pending = ctx.pending
        if pending is not None and pending[0] == data:
            out = pending[1]
        else:
            if not p_len:
                raise ArgumentsBad("NULL length pointer")
            size = ctx.update_len(data)
            if not p_out:
                write_ulong(p_len, size)
                op.release(ctx)
                return
            _precheck(p_len, size)
            out = ctx.update(data)
            ctx.pending = (data, out)
        output_bytes(p_out, p_len, out)
        ctx.pending = None
    except BufferTooSmall:
        op.release(ctx)
        raise
    except BaseException:
        op.abort(ctx)
        raise
    op.release(ctx)


def run_feed(op, p_in: int, in_len: int) -> None:
    """C_SignUpdate / C_VerifyUpdate / C_DigestUpdate (no output)."""
    ctx = op.update_mark()
    try:
        ctx.update(read_bytes(p_in, in_len))
    except BaseException:
        op.abort(ctx)
        raise
    op.release(ctx)


def run_verify(op, ctx, p_sig: int, sig_len: int) -> None:
    """End of C_Verify / C_VerifyFinal (`ctx` claimed by the caller): always ends the operation."""
    try:
        ctx.verify(read_bytes(p_sig, sig_len))
    except BaseException:
        op.abort(ctx)
        raise
    op.finish(ctx)
