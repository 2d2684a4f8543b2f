"""Typed keys of the application state, set by :func:`gateway.app.create_app`."""

from __future__ import annotations

import asyncpg
from aiohttp import web

from gateway.auth import PrincipalVerifier
from gateway.config import Config
from leases import LeaseTokens
from storage import ObjectStore

CONFIG = web.AppKey("config", Config)
DB = web.AppKey("db", asyncpg.Pool)
STORE = web.AppKey("store", ObjectStore)
LEASE_TOKENS = web.AppKey("lease_tokens", LeaseTokens)
PRINCIPALS = web.AppKey("principals", PrincipalVerifier)
