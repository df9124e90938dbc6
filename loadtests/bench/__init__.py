"""`python -m loadtests.bench`: the cluster against baselines measured in the same run (see __main__).

baseline.py   the baselines: the one-line view on the cluster's layout, openpyxl alone
load.py       load generation: wrk (max rate) and an open-loop generator (latency)
figures.py    each figure, cluster and baseline measured alternately
memory.py     peak memory growth of processes
data.py       rows for the report; the bench's own registrations checked and removed
report.py     the report downloaded as a client does (first byte, last byte)
verdicts.py   goals, ratios, verdicts (pure)
printing.py   the table (pure)
machine.py    what it ran on; the running services' shape
"""
