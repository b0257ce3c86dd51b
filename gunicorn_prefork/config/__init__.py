"""The ``prefork_*`` settings and the tools around them (read in the master, shown by
``--check-config``/``--print-config``).

=========================  =============================================================
:mod:`.settings`           the settings: registration with Gunicorn, reading, checking
:mod:`.suggest`            misspelt ``prefork_*`` names and the closest real one
:mod:`.reuseport`          which binds per-worker SO_REUSEPORT sockets can serve
:mod:`.tooling`            ``--check-config`` and ``--print-config`` (via the start-up hook)
:mod:`.logger`             the one logger every message of the plugin goes through
:mod:`.tested_versions`    the Gunicorn releases it is tested with; the warning outside
=========================  =============================================================

Nothing here imports :mod:`gunicorn_prefork.master` or :mod:`gunicorn_prefork.worker`.
"""
