def application(environ, start_response):
    return []


def app(environ, start_response):
    return []
