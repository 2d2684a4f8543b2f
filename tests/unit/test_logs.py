"""Library logs (the standard library's ``logging``) come out as the gateway's own:
one JSON line per record, in one write, with ``logger``, redacted.

Each case runs in a fresh interpreter: logging configuration is process-wide.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from typing import Any

JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLWJ5dGVz"

# Records every write() to stderr, then prints them as JSON on stdout at exit.
PRELUDE = """
import atexit, io, json, logging, sys

class Recorder(io.TextIOBase):
    def __init__(self):
        self.writes = []
    def write(self, text):
        self.writes.append(text)
        return len(text)
    def flush(self):
        pass

recorder = sys.stderr = Recorder()
atexit.register(lambda: print(json.dumps(recorder.writes)))
from gateway.logs import configure_logging, get_logger
"""


def run(body: str) -> list[str]:
    """The writes to stderr of ``body`` run after PRELUDE in a new interpreter."""
    result = subprocess.run(
        [sys.executable, "-c", PRELUDE + textwrap.dedent(body)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    writes: list[str] = json.loads(result.stdout.strip().splitlines()[-1])
    return writes


def lines(writes: list[str]) -> list[dict[str, Any]]:
    """Each write is exactly one line, and each line one JSON object."""
    for write in writes:
        assert write.endswith("\n") and write.count("\n") == 1, write
    return [json.loads(write) for write in writes]


def test_a_library_error_with_a_traceback_is_one_redacted_json_line() -> None:
    writes = run(
        f"""
        configure_logging("info")
        try:
            raise RuntimeError("inner {JWT}")
        except RuntimeError:
            logging.getLogger("aiohttp.server").error("boom %s", "{JWT}", exc_info=True)
        """
    )
    assert len(writes) == 1
    (line,) = lines(writes)
    assert line["logger"] == "aiohttp.server"
    assert line["level"] == "error"
    assert line["event"] == "boom [redacted]"
    assert "Traceback" in line["exception"] and "RuntimeError" in line["exception"]
    assert "ts" in line
    assert JWT not in writes[0] and "eyJhbGci" not in writes[0]


def test_the_gateways_own_lines_name_their_logger_too() -> None:
    writes = run(
        f"""
        log = get_logger("gateway.publish")  # before configuring, as modules do
        configure_logging("info")
        log.info("artifact.published", token="{JWT}")
        logging.getLogger("asyncpg.pool").warning("pool %d", 3)
        """
    )
    own, library = lines(writes)
    assert own["logger"] == "gateway.publish" and own["event"] == "artifact.published"
    assert own["token"] == "[redacted]"
    assert library == library | {"logger": "asyncpg.pool", "level": "warning", "event": "pool 3"}


def test_the_level_applies_to_library_records() -> None:
    writes = run(
        """
        configure_logging("warning")
        logging.getLogger("aiohttp.server").info("hidden")
        logging.getLogger("asyncio").warning("shown")
        """
    )
    assert [line["event"] for line in lines(writes)] == ["shown"]


def test_debug_shows_library_debug_but_not_the_s3_clients() -> None:
    """botocore's debug records carry signed headers and request bodies."""
    writes = run(
        """
        configure_logging("debug")
        logging.getLogger("asyncio").debug("selector")
        logging.getLogger("botocore.endpoint").debug("Sending http request: Signature=abc")
        logging.getLogger("aiobotocore.endpoint").debug("body")
        logging.getLogger("botocore.credentials").info("Found credentials")
        """
    )
    events = [(line["logger"], line["event"]) for line in lines(writes)]
    assert events == [("asyncio", "selector"), ("botocore.credentials", "Found credentials")]


def test_configuring_twice_does_not_double_lines() -> None:
    writes = run(
        """
        configure_logging("info")
        configure_logging("info")
        logging.getLogger("aiohttp.web").info("once")
        """
    )
    assert [line["event"] for line in lines(writes)] == ["once"]


def test_warnings_and_unretrieved_task_errors_are_lines_too() -> None:
    writes = run(
        """
        import asyncio, gc, warnings
        configure_logging("info")
        warnings.warn("careful", UserWarning)

        async def main():
            async def fail():
                raise ValueError("lost")
            task = asyncio.ensure_future(fail())
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            del task
            gc.collect()

        asyncio.run(main())
        """
    )
    by_logger = {line["logger"]: line for line in lines(writes)}
    assert "careful" in by_logger["py.warnings"]["event"]
    assert "ValueError: lost" in by_logger["asyncio"]["exception"]


def test_url_credentials_in_library_errors_are_redacted() -> None:
    # e.g. a driver's error naming GATEWAY_DATABASE_URL, or an S3 endpoint with credentials
    dsn = "postgresql://app:pw-s3cret@db:5432/gw?password=q-s3cret"
    writes = run(
        f"""
        configure_logging("info")
        try:
            raise OSError("cannot reach http://key:s3-s3cret@s3:8333/?X-Amz-Signature=s3cret")
        except OSError:
            logging.getLogger("asyncpg").error("connecting to %s failed", "{dsn}", exc_info=True)
        get_logger("gateway.startup").warning("backend.unreachable", url="{dsn}")
        """
    )
    first, second = lines(writes)
    assert first["event"] == "connecting to postgresql://[redacted]@db:5432/gw?[redacted] failed"
    assert "http://[redacted]@s3:8333/?[redacted]" in first["exception"]
    assert second["url"] == "postgresql://[redacted]@db:5432/gw?[redacted]"
    assert not any("s3cret" in write for write in writes)


def test_redact_urls() -> None:
    from gateway.logs import redact_urls

    assert redact_urls("http://u:p@ss@h:1/p?q=1 and s3://h/b") == (
        "http://[redacted]@h:1/p?[redacted] and s3://h/b"
    )
    assert redact_urls("no URL: user:pw@host") == "no URL: user:pw@host"


def test_console_lines_for_a_terminal_are_plain_words_coloured_unless_no_color() -> None:
    body = f"""
        recorder.isatty = lambda: True  # stderr is a terminal
        configure_logging("info", "console", colors={{colors}})
        get_logger("gateway.http").info("http.request", route="/readyz", token="{JWT}")
        logging.getLogger("aiohttp.server").warning("slow %s", "client")
        """
    for colors in (False, True):
        writes = run(body.format(colors=colors))
        assert len(writes) == 2
        for write in writes:
            assert write.endswith("\n") and write.count("\n") == 1
            assert not write.startswith("{")  # not JSON
            assert JWT not in write
            assert ("\x1b[" in write) is colors
        plain = [re.sub(r"\x1b\[[0-9;]*m", "", write) for write in writes]
        assert "http.request" in plain[0] and "route=/readyz" in plain[0]
        assert "token=[redacted]" in plain[0]
        assert "slow client" in plain[1] and "aiohttp.server" in plain[1]


def test_console_lines_off_a_terminal_have_no_colours() -> None:
    writes = run(
        """
        configure_logging("info", "console", colors=True)  # stderr is not a terminal
        get_logger("gateway.http").info("http.request")
        """
    )
    assert len(writes) == 1 and "\x1b[" not in writes[0]


def test_dev_logs_console_lines_in_a_terminal_unless_a_format_is_set(monkeypatch) -> None:
    from gateway import cli
    from gateway.config import Config

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert cli._dev_log_format(Config.from_env({})).log_format == "console"
    chosen = Config.from_env({"GATEWAY_LOG_FORMAT": "json"})
    assert cli._dev_log_format(chosen).log_format == "json"
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    assert cli._dev_log_format(Config.from_env({})).log_format == "json"
