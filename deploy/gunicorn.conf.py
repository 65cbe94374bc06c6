"""gunicorn settings for Siyu's web process: ``gunicorn -c deploy/gunicorn.conf.py wsgi:app``.

Every value can be overridden on the command line or with GUNICORN_CMD_ARGS.
"""

import os

bind = os.environ.get("SIYU_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("SIYU_WEB_WORKERS", "2"))  # two per core is plenty: callbacks wait on commits
worker_class = "gevent"  # callbacks share commits; greenlets wait for them cheaply (README: Processes)
worker_connections = 200
timeout = 30
graceful_timeout = 20
keepalive = 5
accesslog = None  # Siyu logs what matters; nginx keeps the access log
forwarded_allow_ips = os.environ.get("SIYU_FORWARDED_ALLOW_IPS", "127.0.0.1")


def post_worker_init(worker):  # gunicorn's hook signature
    # The app is built: its own objects (modules, the routes, the mapped classes) live as long as the
    # process, so the cycle collector stops looking at them (create_app sets how often it runs).
    import gc

    gc.freeze()


def child_exit(server, worker):  # gunicorn's hook signature
    # Multiprocess metrics (PROMETHEUS_MULTIPROC_DIR): a dead worker's live gauges are dropped; its
    # counters stay in the machine's totals.
    from bot.metrics import mark_process_dead

    mark_process_dead(worker.pid)
