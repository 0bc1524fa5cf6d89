"""Cheap switches for hot paths: is Debug/Trace on in any sink?

Set by the logging setup at C_Initialize; read as `logflags.DEBUG` before building a log line
that would cost more than the call it describes.
"""

DEBUG = False
TRACE = False
