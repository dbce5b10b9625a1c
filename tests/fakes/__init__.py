"""Typed test doubles shared by the test suites: fake engines, runtime, clock, Keystone, API and worker.

Every double here is checked by mypy in strict mode (`[tool.mypy] files` in pyproject.toml). A double that
stands in for one of the house's protocols (`Engine`, `Accounts`, `Runtime`) is assigned to that protocol at
module level, so a change of the protocol that the double does not follow fails mypy instead of a test at
run time. Tests import doubles from here and define none of their own that another test could share.
Production code never imports this package (an import-linter contract says so).
"""
