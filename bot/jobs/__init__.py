"""Queue tasks (RQ on Redis) and the periodic-job registry; the scheduler runs in its own process."""
