"""Running the platform beyond one process: instance checks, run tags for launchers, local servers.

The configurations themselves live in ``deploy/`` (Postgres, Celery, Helm values); this
package holds the little code they need: a connection check that names the setting to fix,
pool limits set before anything launches, the run tags that route CPU runs away from GPUs,
and starting Postgres, Redis and an S3-compatible server on 127.0.0.1 for development and tests.
"""
