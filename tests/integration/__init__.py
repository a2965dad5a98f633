"""End-to-end tests: real frameworks, real clients and hostile clients against a frontdesk process.

A package (not a bare directory) so its test modules and `conftest` get their own module names,
and so the server subprocess can import the apps here as `tests.integration.<module>`.
"""
