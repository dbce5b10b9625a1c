"""Identity: built-in tokens, projects and roles, and the admin bootstrap run at first start.

`context.py` holds `AuthContext`, the pure description of who is asking (imported by `services` and
`api`); `tokens.py` issues and checks tokens (only their sha256 is stored); `bootstrap.py` creates the
first admin project and token. This package may import `store` and `domain`; it never imports `api`.
"""
