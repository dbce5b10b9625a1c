"""`KeystoneSettings` (`REDDWARF_KEYSTONE_*`): where Keystone is, who Reddwarf is there, and the cache.

Only loaded when `REDDWARF_IDENTITY=keystone` (and by `reddwarf openstack register` for its defaults).
The service user authenticates with a password (`USERNAME`, `PASSWORD`, `USER_DOMAIN_NAME`,
`PROJECT_NAME`, `PROJECT_DOMAIN_NAME`) or an application credential (`APPLICATION_CREDENTIAL_ID`,
`APPLICATION_CREDENTIAL_SECRET`); `service_credentials()` checks that one of them is complete and names
the missing settings otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from reddwarf.domain.secret import Secret

ENV_PREFIX = "REDDWARF_KEYSTONE_"


@dataclass(frozen=True, slots=True)
class PasswordCredentials:
    """Keystone's `password` method, scoped to a project (by name within its domain, or by id)."""

    username: str
    password: Secret
    user_domain_name: str = "Default"
    project_name: str | None = None
    project_domain_name: str = "Default"
    project_id: str | None = None


@dataclass(frozen=True, slots=True)
class ApplicationCredential:
    """Keystone's `application_credential` method; the credential carries its own project scope."""

    credential_id: str
    secret: Secret


Credentials = PasswordCredentials | ApplicationCredential


class KeystoneConfigError(ValueError):
    """The Keystone settings are incomplete; the message names the environment variables to set."""


class KeystoneSettings(BaseSettings):
    """Everything the Keystone identity backend needs; each field names its `REDDWARF_KEYSTONE_` variable."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

    auth_url: str | None = None
    username: str | None = None
    password: SecretStr | None = None
    user_domain_name: str = "Default"
    project_name: str | None = None
    project_domain_name: str = "Default"
    application_credential_id: str | None = None
    application_credential_secret: SecretStr | None = None

    service_name: str = "reddwarf"
    service_type: str = "database"
    admin_roles: tuple[str, ...] = ("admin",)

    cache_ttl: float = Field(default=60.0, gt=0)
    cache_size: int = Field(default=10_000, gt=0)
    timeout: float = Field(default=5.0, gt=0)
    ca_file: Path | None = None
    insecure: bool = False

    @field_validator("auth_url")
    @classmethod
    def _v3_url(cls, value: str | None) -> str | None:
        return None if value is None else v3_url(value)

    def require_auth_url(self) -> str:
        if not self.auth_url:
            raise KeystoneConfigError(
                f"identity=keystone needs {ENV_PREFIX}AUTH_URL (Keystone's URL, e.g. http://keystone:5000/v3)"
            )
        return self.auth_url

    def service_credentials(self) -> Credentials:
        """The service user's credentials, or `KeystoneConfigError` naming what is missing."""
        if self.application_credential_id or self.application_credential_secret:
            if not (self.application_credential_id and self.application_credential_secret):
                raise KeystoneConfigError(
                    f"set both {ENV_PREFIX}APPLICATION_CREDENTIAL_ID and {ENV_PREFIX}APPLICATION_CREDENTIAL_SECRET"
                )
            return ApplicationCredential(
                self.application_credential_id, Secret(self.application_credential_secret.get_secret_value())
            )
        missing = [
            f"{ENV_PREFIX}{name.upper()}"
            for name in ("username", "password", "project_name")
            if not getattr(self, name)
        ]
        if missing or self.password is None or self.username is None:
            raise KeystoneConfigError(
                "identity=keystone needs the service user's password credentials ("
                + ", ".join(missing)
                + f") or an application credential ({ENV_PREFIX}APPLICATION_CREDENTIAL_ID and _SECRET)"
            )
        return PasswordCredentials(
            username=self.username,
            password=Secret(self.password.get_secret_value()),
            user_domain_name=self.user_domain_name,
            project_name=self.project_name,
            project_domain_name=self.project_domain_name,
        )

    @property
    def verify(self) -> bool | str:
        """httpx's `verify`: a CA bundle, False with `insecure`, else the system's trust store."""
        if self.insecure:
            return False
        return str(self.ca_file) if self.ca_file is not None else True


def v3_url(url: str) -> str:
    """`http://keystone:5000`, `.../v3` and `.../v3/` all mean the v3 API root `http://keystone:5000/v3`."""
    base = url.rstrip("/")
    return base if base.endswith("/v3") else base + "/v3"
