"""Reliability suite: proves with numbers that the API survives what a factory line sends it.

Every check runs against a real `python -m service` process on 127.0.0.1, bounded in
count and time: fuzzing, decompression bombs, a soak at concurrency 32, slow clients,
kill -9 and restart, damaged model files, a DVC stage killed half-way, and security
checks. `python -m reliability --quick` runs in under a minute (CI runs it through
tests/test_reliability.py); `make reliability` runs the full mode. Both print a summary
table and write it as JSON and markdown under reliability/results/.
"""
