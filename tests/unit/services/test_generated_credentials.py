"""Credentials Reddwarf makes up for people to paste: builtin tokens and the root password root enable answers.

None may start with "-": after `--os-token`, `mysql -p` or `redis-cli -a`, such a value is read as another
option (a plain token_urlsafe value starts with "-" one time in 64). Each is still random and unique.
"""

from __future__ import annotations

from reddwarf.identity.tokens import new_token_value
from reddwarf.services.accounts import new_root_password

SAMPLES = 3000  # with plain token_urlsafe, 6000 values all without a leading "-" is a 1-in-10^40 chance


def test_generated_tokens_and_root_passwords_never_start_with_a_dash() -> None:
    values = [new_token_value().reveal() for _ in range(SAMPLES)]
    values += [new_root_password().reveal() for _ in range(SAMPLES)]
    assert [value for value in values if value.startswith("-")] == []
    assert len(set(values)) == len(values)
    assert all(len(value) >= 24 for value in values)
