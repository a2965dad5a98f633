def wsgi(environ, start_response):
    return []
