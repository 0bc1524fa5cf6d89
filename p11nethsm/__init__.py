"""p11nethsm: a PKCS#11 module for Nitrokey NetHSM, run inside an embedded CPython."""

__version__ = "0.1.0"
