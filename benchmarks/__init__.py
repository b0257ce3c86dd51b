"""Load tools, run on demand from the repository root as ``python -m benchmarks.<tool>``.

The scripts (``seed``, ``lifecycle``, ``spread``, ``graceful``) each hold one scenario;
what they share is the harness: ``procfs`` (process tree, CPU, RSS), ``servers``
(starting, probing and stopping servers), ``wrk`` (load from wrk) and ``results``
(repeats, medians, markdown tables, JSON, source state).
"""
