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
"""

from __future__ import annotations

import re

from p11nethsm.ck.errors import AttributeValueInvalid

__all__ = ["PREFIX", "MAX_RAW_ENCODED", "is_valid_key_id", "encode_id", "decode_id", "label_of"]

PREFIX = "0---"
MAX_ID_CHARS = 128
MAX_RAW_ENCODED = (MAX_ID_CHARS - len(PREFIX)) // 2  # 62 bytes

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


def label_of(key_id: str, nethsm_label: str | None) -> bytes:
    """CKA_LABEL of a key: its NetHSM label where the firmware has one, else the CKA_ID bytes
    when they are UTF-8 text (so `--label x` finds a key generated with `--label x` on
    firmware without labels), else the key id text itself."""
    if nethsm_label:
        return nethsm_label.encode("utf-8")
    raw = decode_id(key_id)
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return key_id.encode("ascii")
    if any(b < 0x20 for b in raw):
        return key_id.encode("ascii")
    return raw
