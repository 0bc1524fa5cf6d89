"""Network layer of the NetHSM client (imported lazily: urllib3 and ssl stay out of C_Initialize).

* `tls`       TLS policy per instance: system trust, `ca_file`, pinned fingerprints, insecure
* `pool`      urllib3 pool per instance (idle age, keepalive, pin check) and the one exchange
* `errors`    transport errors (`ExchangeError` and its phase), mapped to NetHSM errors in api/
* `failover`  the loop of every API call: round robin, failover, retries, deadlines -> `Response`
* `retry`     the immutable retry policy of one API call
* `instances` instances of a slot: health flags, back-off, round-robin choice
* `health`    GET /health/ready checks: background thread, or inline when threads are disallowed
"""
