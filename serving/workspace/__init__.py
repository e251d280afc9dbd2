"""The CS workspace: a server-rendered web application under /app of the scoring service, where a CSM
works their escalations and an account, and a CS lead reads the book (docs/workspace.md).

`app` (the Starlette application: its routes and pages), `web` (sessions, CSRF, roles, rendering,
security headers), `actions` (the forms that change something), `queue` (the queue's data, a page
at a time), `auth` (users and roles, password hashes, the session secret, CSRF tokens; the standard
library only), `data` (what the account page, the book view and search show), `charts` (inline
SVG), `format` (numbers, times and outcomes in words), `templates/` (Jinja2) and `static/` (one
stylesheet). It reads the store, the latest scores and the served model, and
writes only through the functions the API writes through (serving/lifecycle.py, the store's
feedback). serving/server.py mounts it into the BentoML service; nothing here imports BentoML.
"""
