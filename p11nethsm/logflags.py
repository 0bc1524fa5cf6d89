"""Cheap switches for hot paths: is Debug/Trace on in any sink?

Set by the logging setup at C_Initialize; read as `logflags.DEBUG` before building a log line
that would cost more than the call it describes. LEVEL_NO is the lowest loguru level number
that one of our sinks accepts (p11nethsm.log imports loguru only for such lines); before
logging is configured no line qualifies.
"""

DEBUG = False
TRACE = False
LEVEL_NO = 1000
