"""Kombu's Redis transport without the restore-on-close that kills a worker when Redis drops.

When the connection to Redis is lost while messages are reserved, kombu tries to push them back
through the connection it has just torn down, raises AttributeError (`'NoneType' object has no
attribute 'hostname'`), and Celery exits with "Unrecoverable error" instead of reconnecting.
payhook needs no such restore: the database is the source of truth, and a lapsed lease brings
the rows back to the scheduler.
"""

from __future__ import annotations

from kombu.transport import redis


class Channel(redis.Channel):
    do_restore = False


class Transport(redis.Transport):
    Channel = Channel
