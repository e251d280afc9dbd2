"""Shared foundations: settings, table contracts, errors and atomic I/O.

Nothing here imports a heavy library at import time; every other layer builds on it.
"""
