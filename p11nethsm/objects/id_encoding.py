"""CKA_ID <-> NetHSM key id: a reversible encoding for arbitrary binary CKA_IDs.

Policy (ours, compatible with the vendor module since its 2.1.0, `tools/tests/id_encoding.sh`):

- a CKA_ID whose bytes are a valid NetHSM key id (ASCII, 1..128 chars, first char
  `[A-Za-z0-9]`, the rest `[A-Za-z0-9_.-]`) is used as the key id unchanged;
- any other CKA_ID (binary, e.g. Knot DNS's 20 random bytes, or text with spaces) becomes
  ``"0---" + HEX_UPPER(bytes)``; 4 + 2*62 = 128, so at most 62 raw bytes can be encoded;
- decoding turns ``0---<HEX>`` back into bytes only when encoding those bytes gives the very
  same id. So the map is a bijection on its image: an id like ``0---41`` (whose bytes b"A" would
  encode as ``A``) reads back as the text ``0---41``.

The ``_``, ``.`` and ``-`` characters need NetHSM >= 3.0; v1/v2 firmware only accepts
alphanumeric ids, so encoded ids need v3.0+ (as with the vendor module).

CKA_LABEL is bytes too (Go wrappers use random label bytes). Firmware with key labels stores a
label as a UTF-8 string of at most 32 bytes, so (ours, same idea as the id):

- a label that is UTF-8 text without control characters and does not start with
  ``LABEL_PREFIX`` is stored as that text;
- any other label is stored as ``LABEL_PREFIX + base64(bytes)`` (at most 21 raw bytes fit);
- a stored label reads back as bytes only when encoding those bytes gives the very same text,
  so a label set by another tool that merely looks encoded stays text.
"""

from __future__ import annotations

import re

from p11nethsm.ck.errors import AttributeValueInvalid

__all__ = ["PREFIX", "MAX_RAW_ENCODED", "is_valid_key_id", "encode_id", "decode_id", "label_of",
           "LABEL_PREFIX", "MAX_LABEL_BYTES", "encode_label", "decode_label"]

PREFIX = "0---"
MAX_ID_CHARS = 128
MAX_RAW_ENCODED = (MAX_ID_CHARS - len(PREFIX)) // 2  # 62 bytes

LABEL_PREFIX = "b64:"
MAX_LABEL_BYTES = 32  # NetHSM: a label is UTF-8, at most 32 bytes

_VALID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}")
_HEX_UPPER = re.compile(r"(?:[0-9A-F]{2})+")


def is_valid_key_id(text: str) -> bool:
    """True if `text` is a valid NetHSM (v3.0+) key id."""
    return _VALID.fullmatch(text) is not None


def encode_id(ck_id: bytes) -> str:
    """The NetHSM key id for a CKA_ID (AttributeValueInvalid if it cannot be encoded)."""
    if not ck_id:
        raise AttributeValueInvalid("an empty CKA_ID cannot name a NetHSM key")
    try:
        text = ck_id.decode("ascii")
    except UnicodeDecodeError:
        text = None
    if text is not None and is_valid_key_id(text):
        return text
    if len(ck_id) > MAX_RAW_ENCODED:
        raise AttributeValueInvalid(
            f"a CKA_ID of {len(ck_id)} bytes that is not a valid NetHSM key id cannot be encoded "
            f"(at most {MAX_RAW_ENCODED} bytes)")
    return PREFIX + ck_id.hex().upper()


def decode_id(key_id: str) -> bytes:
    """The CKA_ID of a NetHSM key id (inverse of encode_id on its image)."""
    if key_id.startswith(PREFIX):
        rest = key_id[len(PREFIX):]
        if _HEX_UPPER.fullmatch(rest):
            raw = bytes.fromhex(rest)
            if encode_id(raw) == key_id:
                return raw
    return key_id.encode("utf-8")


def _as_text(raw: bytes) -> str | None:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        return None
    return text


def encode_label(label: bytes) -> str:
    """The NetHSM label text for CKA_LABEL bytes (AttributeValueInvalid if it is too long)."""
    text = _as_text(label)
    if text is None or text.startswith(LABEL_PREFIX):
        import base64  # lazy: only for a binary label (b64:...)

        text = LABEL_PREFIX + base64.b64encode(label).decode("ascii")
    if len(text.encode("utf-8")) > MAX_LABEL_BYTES:
        raise AttributeValueInvalid(
            f"a CKA_LABEL of {len(label)} bytes is {len(text.encode('utf-8'))} bytes once encoded for the "
            f"NetHSM, which stores at most {MAX_LABEL_BYTES} (text) or 21 (binary)")
    return text


def decode_label(text: str) -> bytes:
    """CKA_LABEL bytes of a stored NetHSM label (inverse of encode_label on its image)."""
    if text.startswith(LABEL_PREFIX):
        import base64  # lazy: only for a binary label (b64:...)
        import binascii  # lazy: only for a binary label (b64:...)

        try:
            raw = base64.b64decode(text[len(LABEL_PREFIX):], validate=True)
        except (binascii.Error, ValueError):
            raw = None
        if raw is not None:
            try:
                if encode_label(raw) == text:
                    return raw
            except AttributeValueInvalid:
                pass
    return text.encode("utf-8")


def label_of(key_id: str, nethsm_label: str | None) -> bytes:
    """CKA_LABEL of a key: its NetHSM label (decoded) where the firmware has one, else the
    key's CKA_ID bytes, so a key generated with only a label (which then names the key) is
    found by that label on firmware without labels."""
    if nethsm_label:
        return decode_label(nethsm_label)
    return decode_id(key_id)
