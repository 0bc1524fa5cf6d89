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


class _Claim:
    """`with _Claim(op, ctx):` ends a claimed context on error, once for every run_*:
    CKR_BUFFER_TOO_SMALL keeps the operation (release), any other error ends it (abort).
    A class, not @contextmanager: it is on the path of every C_Sign."""

    __slots__ = ("op", "ctx")

    def __init__(self, op, ctx):
        self.op = op
        self.ctx = ctx

    def __enter__(self):
        return self.ctx

    def __exit__(self, etype, exc, tb) -> bool:
        if etype is not None:
            if issubclass(etype, BufferTooSmall):
                self.op.release(self.ctx)
            else:
                self.op.abort(self.ctx)
        return False


def _deliver(op, ctx, p_out: int, p_len: int, size, work) -> None:
    """The size query / BUFFER_TOO_SMALL / cached result protocol of the module docstring, once:
    `size()` answers a size query (no network), `work()` produces the output (kept on ctx).
    `ctx` is claimed by this call (Operation.claim): released, finished or aborted here."""
    with _Claim(op, ctx):
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
    op.finish(ctx)


def run_single(op, p_data: int, data_len: int, p_out: int, p_len: int) -> None:
    """C_Sign / C_Encrypt / C_Decrypt / C_Digest."""
    ctx = op.single()
    with _Claim(op, ctx):
        data = read_bytes(p_data, data_len) if ctx.result is None else b""
    _deliver(op, ctx, p_out, p_len, lambda: ctx.single_len(data), lambda: ctx.single(data))


def run_final(op, p_out: int, p_len: int) -> None:
    """C_SignFinal / C_EncryptFinal / C_DecryptFinal / C_DigestFinal."""
    ctx = op.claim()
    _deliver(op, ctx, p_out, p_len, ctx.out_len, ctx.final)


def run_update(op, p_in: int, in_len: int, p_out: int, p_len: int) -> None:
    """C_EncryptUpdate / C_DecryptUpdate (output-producing multi-part step)."""
    ctx = op.update_mark()
    with _Claim(op, ctx):
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
    op.release(ctx)


def run_feed(op, p_in: int, in_len: int) -> None:
    """C_SignUpdate / C_VerifyUpdate / C_DigestUpdate (no output)."""
    ctx = op.update_mark()
    with _Claim(op, ctx):
        ctx.update(read_bytes(p_in, in_len))
    op.release(ctx)


def run_verify(op, ctx, p_sig: int, sig_len: int) -> None:
    """End of C_Verify / C_VerifyFinal (`ctx` claimed by the caller): always ends the operation."""
    with _Claim(op, ctx):
        ctx.verify(read_bytes(p_sig, sig_len))
    op.finish(ctx)
