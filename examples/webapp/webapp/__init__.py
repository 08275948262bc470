"""Corral's reference web app: notes, a JSON API and two server-rendered pages.

A Starlette ASGI app served by uvicorn, with a SQLAlchemy 2 data layer (SQLite by
default, PostgreSQL through psycopg 3), a request-id and JSON access-log middleware,
and a health endpoint that checks the database. See README.md beside this package.
"""

__version__ = "0.1.0"
