"""wsgi.errors: lines into the error log, gathered per thread."""

from __future__ import annotations

import logging
import threading

from frontdesk.wsgi.errors import LOGGER, ErrorStream


def test_lines_are_records_and_partial_lines_wait(caplog):
    stream = ErrorStream()
    with caplog.at_level(logging.DEBUG, LOGGER):
        print("one", "two", file=stream)  # four writes, one line
        stream.writelines(["three\r\n", "fo"])
        assert [r.getMessage() for r in caplog.records] == ["one two", "three"]
        stream.write("ur")
        stream.flush()
        stream.flush()  # nothing pending: nothing logged
    assert [(r.name, r.levelname, r.getMessage()) for r in caplog.records][-1] == (
        LOGGER, "ERROR", "four")
    assert len(caplog.records) == 3


def test_threads_writing_at_once_do_not_mix_within_a_line(caplog):
    stream = ErrorStream()
    barrier = threading.Barrier(2)

    def worker(name: str) -> None:
        stream.write(name + " starts, ")
        barrier.wait()
        stream.write(name + " ends\n")

    with caplog.at_level(logging.DEBUG, LOGGER):
        threads = [threading.Thread(target=worker, args=(n,)) for n in ("a", "b")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(5)
    assert sorted(r.getMessage() for r in caplog.records) == ["a starts, a ends",
                                                              "b starts, b ends"]


def test_not_hidden_by_the_log_level(tmp_path):
    # PEP 3333 calls wsgi.errors the error output stream: --log-level critical must not hide it.
    from frontdesk.config import Config
    from frontdesk.logs import APP_LOGGER, ERROR_LOGGER, configure

    loggers = [logging.getLogger(name) for name in (ERROR_LOGGER, APP_LOGGER)]
    saved = [(lg.handlers[:], lg.propagate, lg.level) for lg in loggers]
    try:
        configure(Config(error_log=str(tmp_path / "e.log"), log_level="critical"))
        ErrorStream().write("from the app\n")
        logging.getLogger(ERROR_LOGGER).error("a server error, below critical")
        for handler in loggers[0].handlers:
            handler.flush()
        text = (tmp_path / "e.log").read_text()
        assert "[ERROR] from the app" in text and "below critical" not in text
    finally:
        for lg, (handlers, propagate, level) in zip(loggers, saved):
            for handler in lg.handlers:
                if handler not in handlers:
                    handler.close()
            lg.handlers[:] = handlers
            lg.propagate = propagate
            lg.setLevel(level)
