"""ASGI wrappers (a2wsgi) so uvicorn serves the same WSGI apps as everyone else.

uvicorn has no thread setting for WSGI apps: a2wsgi's pool is the app threads, sized from
BENCH_THREADS, which bench/run.py sets from its --threads (the other servers get it as a flag).
"""

import os

from a2wsgi import WSGIMiddleware

from apps import flask_app, hello, transfer

THREADS = int(os.environ.get("BENCH_THREADS", "8"))
app = WSGIMiddleware(hello, workers=THREADS)
hello_asgi = app
flask_asgi = WSGIMiddleware(flask_app, workers=THREADS)
transfer_asgi = WSGIMiddleware(transfer, workers=THREADS)
