"""ASGI wrappers (a2wsgi) so uvicorn serves the same WSGI apps as everyone else."""

from a2wsgi import WSGIMiddleware

from apps import flask_app, hello, transfer

# 8 threads, like --threads 8 for the other servers.
THREADS = 8
app = WSGIMiddleware(hello, workers=THREADS)
hello_asgi = app
flask_asgi = WSGIMiddleware(flask_app, workers=THREADS)
transfer_asgi = WSGIMiddleware(transfer, workers=THREADS)
