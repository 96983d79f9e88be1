"""Model-quality gates: judge the canary model itself, on a golden set, before it takes traffic.

Pure. `golden` parses the golden set, `contract` diffs two models' metadata, `checks` holds the
math (accuracy, agreement, PSI, demographic parity, p95 latency) and `judge` turns a run's
answers into one three-valued result per check. The I/O (asking the models) is
adapters/inference.py; docs/gates.md says what each check measures.
"""
