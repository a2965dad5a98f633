"""A minimal real Django project (settings, urls, views, wsgi) for the framework tests."""
