"""frontdesk: a production web server for Python WSGI apps."""

__version__ = "0.1.0"
__all__ = ["__version__"]
