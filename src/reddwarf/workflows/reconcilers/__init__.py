"""Reconcilers: the steps of each operation on each kind of resource, and the periodic health sweep."""
