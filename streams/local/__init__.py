"""Local development infrastructure: a real Kafka broker and schema registry, no Docker.

`streams local up|down|status` drive `stack`; `artifacts` fetches the servers from
Maven Central, `broker` and `registry` know how to run each, `processes` owns PIDs.
A secure stack adds `certs` (its test CA) and `auth` (the Keycloak the registry checks
basic auth with).
"""
