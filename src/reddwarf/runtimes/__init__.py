"""Runtimes: WHERE a workload runs (`local` supervised processes, later `kubernetes`).

`base.py` holds the `Runtime` protocol; each runtime is a package named after it. Only
`reddwarf.wiring` and test fixtures import a concrete runtime. Runtimes never import engines: both
speak the workload spec in `reddwarf.domain.workload`.
"""
