"""Reddwarf: an open Database-as-a-Service control plane that speaks OpenStack Trove's v1.0 API.

The package layout and its dependency rules are described in docs/architecture.md.
"""

__version__ = "0.1.0"
