"""The pure model of Reddwarf: ids, specs, statuses, workload specs, capabilities and errors.

No I/O and no import of any other Reddwarf package: everything else may import this one.
"""
