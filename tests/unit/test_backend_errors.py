"""Driver errors of a broken connection or a database that cannot serve now are
``503 unavailable`` with ``Retry-After``, never a 500 (a restart, a failover, a
connection a cancelled query left mid-operation)."""

from __future__ import annotations

import asyncpg
import pytest

import storage
from gateway.api.problems import problem_for
from gateway.errors import DB_BROKEN_CONNECTION

DRIVER_ERRORS = [
    asyncpg.exceptions.InternalClientError("another operation is in progress"),
    asyncpg.exceptions.InterfaceError("cannot perform operation: another operation is in progress"),
    asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed in the middle"),
    asyncpg.exceptions.ConnectionFailureError("connection failure"),
    asyncpg.exceptions.AdminShutdownError("terminating connection due to administrator command"),
    asyncpg.exceptions.CrashShutdownError("crash shutdown"),
    asyncpg.exceptions.CannotConnectNowError("the database system is starting up"),
    asyncpg.exceptions.TooManyConnectionsError("too many clients"),
    asyncpg.exceptions.OutdatedSchemaCacheError("cached statement plan is invalid"),
    ConnectionResetError("reset by peer"),
    TimeoutError(),
]


@pytest.mark.parametrize("exc", DRIVER_ERRORS, ids=lambda e: type(e).__name__)
def test_driver_errors_are_503_with_retry_after(exc: BaseException) -> None:
    problem = problem_for(exc)
    assert problem is not None
    assert (problem.status, problem.code) == (503, "unavailable")
    assert int(problem.headers["Retry-After"]) >= 1


@pytest.mark.parametrize(
    "exc",
    [storage.StorageUnavailable("put_object", "refused"), storage.StorageError("failed")],
    ids=lambda e: type(e).__name__,
)
def test_storage_errors_are_503_with_retry_after(exc: BaseException) -> None:
    problem = problem_for(exc)
    assert problem is not None
    assert (problem.status, problem.code) == (503, "unavailable")
    assert int(problem.headers["Retry-After"]) >= 1


def test_connection_state_errors_are_named_as_such() -> None:
    """These replace the pool's connections; a database out of connection slots, a
    cancelled statement or a constraint violation leaves the healthy ones alone."""
    assert isinstance(asyncpg.exceptions.InternalClientError(), DB_BROKEN_CONNECTION)
    assert isinstance(asyncpg.exceptions.AdminShutdownError(), DB_BROKEN_CONNECTION)
    for kept in (
        asyncpg.exceptions.UniqueViolationError(),
        asyncpg.exceptions.TooManyConnectionsError(),
        asyncpg.exceptions.QueryCanceledError(),
        asyncpg.exceptions.CannotConnectNowError(),
    ):
        assert not isinstance(kept, DB_BROKEN_CONNECTION), type(kept).__name__
