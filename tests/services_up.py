"""Exit 0 if the PostgreSQL and Redis given are reachable (creating the PostgreSQL database if needed)."""

import sys

import psycopg
import redis
from sqlalchemy.engine import make_url


def main(pg_url: str, redis_url: str) -> int:
    url = make_url(pg_url)
    try:
        redis.Redis.from_url(redis_url, socket_connect_timeout=2).ping()
        admin = url.set(drivername="postgresql", database="postgres")
        with psycopg.connect(admin.render_as_string(hide_password=False), connect_timeout=3, autocommit=True) as c:
            exists = c.execute("SELECT 1 FROM pg_database WHERE datname = %s", (url.database,)).fetchone()
            if not exists:
                c.execute(f'CREATE DATABASE "{url.database}"')
    except Exception as exc:
        print(f"services not reachable: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
