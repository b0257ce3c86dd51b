"""What runs in Gunicorn's master (the arbiter): the slots, their workers, steering.

========================  =============================================================
:mod:`.arbiter_hook`      wraps Gunicorn's ``Arbiter`` and calls the coordinator
:mod:`.coordinator`       :class:`Master`: one method per arbiter event, does the I/O
:mod:`.slot_table`        the slot table: per bind, one SO_REUSEPORT socket per worker
:mod:`.slot_states`       the owner of the slot and worker states and their transitions
:mod:`.boot_watch`        which workers have booted (Gunicorn's heartbeat)
:mod:`.handover`          successors for workers leaving on their own
:mod:`.retiring`          draining and closing surplus slots (TTOU)
:mod:`.recovery`          crash counting, the halt, the back-off
:mod:`.steering_program`  which slots take new connections (policy) and the cBPF program
:mod:`.steering`          keeps the attached program in line with the states and stalls
:mod:`.overlap`           the USR2 overlap rule: who watches and steers shared slots
:mod:`.steering_report`   what the steering saw, told to operators (logs, statsd, exit)
:mod:`.stall_watch`       which slots hold queued connections their worker does not take
:mod:`.worker_cpu`        a worker's CPU time and state (waiting for a CPU is no stall)
:mod:`.master_thread`     a thread of the master's: signals blocked, paused at forks
:mod:`.watch_thread`      when the stall watch looks: a thread of its own
:mod:`.at_fork`           what is paused around a fork and closed in a child, in one place
:mod:`.rescue`            moving connections queued on stalled slots to live workers
:mod:`.rebalancing`       keep-alive rebalancing caps (``prefork_load_aware``)
:mod:`.turnover`          are connections short? (then slots are not weighed)
:mod:`.balance_report`    the exit summary's line on how evenly slots took connections
:mod:`.counting`          what the master counts: kept for ``/metrics``, sent to statsd
:mod:`.status`            the status endpoint's life in the master, and its snapshot
:mod:`.status_view`       ``/ready``, ``/live`` and the agent's answer (pure policy)
:mod:`.status_metrics`    ``/metrics`` in Prometheus' text format
:mod:`.status_server`     the status endpoint's socket and thread (bounded HTTP, agent)
========================  =============================================================

Nothing here imports :mod:`gunicorn_prefork.worker`; what both sides share is in
:mod:`gunicorn_prefork.fork`, :mod:`gunicorn_prefork.config` and the boundary
:mod:`gunicorn_prefork._gunicorn`.
"""
