"""What `bentoml serve` loads: the scoring API (serving/service.py) made a BentoML service.

    bentoml serve serving.server:ChurnService --port 3000      (or `churn serve`, `make serve`)

BentoML imports the module it is pointed at in every worker and expects the service ready there,
so the set-up a decorator cannot express runs here, once, in `configure()`: the bearer-token
middleware, the CS workspace mounted at /app, BentoML's request deadline replaced, the responses'
media type. Nothing else in serving/ changes BentoML or the service when imported. The command
line above is built in one place, serving/launch.py (`serve_command`); bentofile.yaml names the
same target.
"""

from __future__ import annotations

import logging

import bentoml

from serving import traffic
from serving.auth import WORKSPACE_PATH, BearerAuth
from serving.service import ChurnAPI
from serving.workspace.app import mountable


class RefusalsInOneLine(logging.Filter):
    """BentoML logs every request it answers with an error as "Exception on <path>" at ERROR with a
    traceback, a refusal too (a 400 naming a field, a 404 for an unknown account): the log of a
    help desk's wrong ids read as a crashing server. A refusal (status below 500, or a request the
    models rejected) becomes one INFO line with its status and message; a 500 keeps its traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        from pydantic import ValidationError

        exc = record.exc_info[1] if record.exc_info else None
        status = 400 if isinstance(exc, ValidationError) else getattr(getattr(exc, "error_code", None), "value", 500)
        if exc is not None and status < 500:
            record.msg, record.args = "refused %s: %s %s", (record.args[0] if record.args else "?", status, exc)
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.exc_info, record.exc_text = None, None
        return True


def configure(api: type) -> bentoml.Service:
    """`api`'s endpoints as the service BentoML runs, with the set-up serving needs."""
    # two worker processes: one per core of the reference machine (benchmarks/serving.py compares one and two)
    service = bentoml.service(name="churn", traffic={"timeout": 30}, workers=2)(api)
    # BentoML's open-source server has no auth of its own (serving/auth.py: health, metrics and the workspace exempt)
    service.add_asgi_middleware(BearerAuth, tokens=lambda: bentoml.get_current_service().runtime.settings.api_tokens)
    # the CS workspace (serving/workspace) at /app, with its own sign-in; it answers from the worker's
    # runtime (model, snapshot, store), which it takes once BentoML has built the worker's ChurnAPI
    service.mount_asgi_app(mountable(lambda: bentoml.get_current_service().runtime), path=WORKSPACE_PATH)
    # BentoML's request timer is never cancelled: it builds its timeout middleware from ours (serving/traffic.py)
    traffic.install()
    logging.getLogger("bentoml._internal.server.http_app").addFilter(RefusalsInOneLine())
    # Every response here is JSON. BentoML works out a response's media type from the output model's
    # JSON schema unless the model names it, and for a list output it builds that schema again on
    # every request, a large share of a worker's time under load. Naming it saves the work.
    for method in service.apis.values():
        method.output_spec.media_type = "application/json"
    return service


ChurnService = configure(ChurnAPI)
