"""A small typed client for the Confluent Schema Registry REST API (httpx, sync).

Owns every HTTP call to the registry: registering and looking up schemas, fetching a
schema by ID (cached: one fetch per ID per client, safe across threads), versions,
per-subject compatibility, compatibility tests and subject listing. Works against
Confluent Schema Registry, Karapace and Apicurio's `/apis/ccompat/v7` API.

Errors are typed so callers can tell transient from permanent:
`RegistryUnavailable` (network error, timeout, 5xx: retry later) versus
`SchemaNotFound` / `SubjectNotFound` / `VersionNotFound` (404s), `IncompatibleSchema`
(409), `InvalidSchema` (422), `RegistryAuthError` (401/403). All derive from
`RegistryError(StreamsError)`. Every request has a timeout.
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from streams.errors import StreamsError
from streams.schemas import AvroSchema, parse

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
DEFAULT_TIMEOUT_S = 10.0


class RegistryError(StreamsError):
    """The schema registry refused or failed a request."""


class RegistryUnavailable(RegistryError):
    """The registry did not answer, timed out or failed with a 5xx: transient, retry later."""


class RegistryAuthError(RegistryError):
    """The registry rejected the credentials (401/403)."""


class SchemaNotFound(RegistryError):
    """No schema has this ID (permanent)."""


class SubjectNotFound(RegistryError):
    """The subject does not exist."""


class VersionNotFound(RegistryError):
    """The subject exists but has no such version."""


class IncompatibleSchema(RegistryError):
    """Registering was refused: the schema breaks the subject's compatibility level."""


class InvalidSchema(RegistryError):
    """The registry could not parse the schema or the request (422)."""


@dataclass(frozen=True)
class RegisteredSchema:
    """One version of a subject."""

    subject: str
    version: int
    id: int
    schema: str


@dataclass(frozen=True)
class CompatibilityResult:
    """The registry's answer to a compatibility test."""

    compatible: bool
    messages: tuple[str, ...] = ()


SchemaArg = str | Mapping[str, Any] | AvroSchema


def _text(schema: SchemaArg) -> str:
    return parse(schema).text


class SchemaRegistryClient:
    """A registry at `url` (e.g. http://127.0.0.1:8081 or .../apis/ccompat/v7).

    One instance per process is the intended use: it owns a connection pool and the
    ID -> schema cache. Thread-safe.
    """

    def __init__(
        self,
        url: str,
        *,
        username: str | None = None,
        password: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        transport: httpx.BaseTransport | None = None,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        self.url = url.rstrip("/")
        auth = httpx.BasicAuth(username, password or "") if username else None
        self._http = httpx.Client(
            base_url=self.url,
            auth=auth,
            timeout=httpx.Timeout(timeout_s),
            headers={"Accept": CONTENT_TYPE + ", application/json"},
            transport=transport,
            # A CA file for a registry whose certificate a private CA signed.
            verify=verify,
        )
        self._by_id: dict[int, str] = {}
        self._id_locks: dict[int, threading.Lock] = {}
        self._guard = threading.Lock()

    # -- plumbing --------------------------------------------------------------------
    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> SchemaRegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(
        self,
        method: str,
        path: str,
        *,
        body: Mapping[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
        not_found: type[RegistryError] = SubjectNotFound,
    ) -> Any:
        try:
            response = self._http.request(
                method,
                path,
                json=body,
                params=params,
                headers={"Content-Type": CONTENT_TYPE} if body is not None else None,
            )
        except httpx.TimeoutException:
            raise RegistryUnavailable(f"schema registry at {self.url} timed out on {method} {path}") from None
        except httpx.TransportError as exc:
            if "CERTIFICATE_VERIFY_FAILED" in str(exc) or "WRONG_VERSION_NUMBER" in str(exc):
                # Transient for the runtime (records are held, not dead-lettered), but the
                # fix is configuration: say which.
                raise RegistryUnavailable(
                    f"TLS handshake with the schema registry at {self.url} failed ({_tls_reason(exc)}); "
                    "set STREAMS_SCHEMA_REGISTRY_CAFILE to the CA that signed its certificate "
                    "and check the URL's http/https"
                ) from None
            raise RegistryUnavailable(
                f"schema registry at {self.url} is unreachable ({type(exc).__name__}: {exc}); "
                "check STREAMS_SCHEMA_REGISTRY_URL or run `streams local up`"
            ) from None
        status = response.status_code
        if status < 300:
            try:
                return response.json()
            except ValueError:
                raise RegistryUnavailable(
                    f"schema registry at {self.url} sent a non-JSON answer to {method} {path}"
                ) from None
        message = _error_message(response)
        where = f"{method} {path}"
        if status >= 500:
            raise RegistryUnavailable(f"schema registry failed {where} ({status}): {message}")
        if status in (401, 403):
            raise RegistryAuthError(
                f"schema registry at {self.url} refused {where} ({status}: {message}); check "
                "STREAMS_SCHEMA_REGISTRY_USERNAME and STREAMS_SCHEMA_REGISTRY_PASSWORD"
            )
        if status == 404:
            kind = _NOT_FOUND_CODES.get(_error_code(response), not_found)
            raise kind(f"{message} ({where})")
        if status == 409:
            raise IncompatibleSchema(message)
        if status == 422:
            raise InvalidSchema(f"schema registry rejected {where}: {message}")
        raise RegistryError(f"schema registry answered {status} to {where}: {message}")

    # -- schemas ---------------------------------------------------------------------
    def register(self, subject: str, schema: SchemaArg) -> int:
        """Register `schema` under `subject` (a no-op if already there); its global ID."""
        body = {"schemaType": "AVRO", "schema": _text(schema)}
        try:
            data = self._request("POST", f"/subjects/{_seg(subject)}/versions", body=body)
        except IncompatibleSchema as exc:
            # Two workers registering the same new subject at once: Apicurio answers the
            # loser 409 "already exists". The schema is there; look it up instead.
            if "exist" not in str(exc).lower():
                raise
            found = self.lookup(subject, schema)
            if found is None:
                raise
            data = {"id": found.id}
        schema_id = int(data["id"])
        with self._guard:
            self._by_id.setdefault(schema_id, body["schema"])
        return schema_id

    def lookup(self, subject: str, schema: SchemaArg) -> RegisteredSchema | None:
        """The version of `subject` holding exactly `schema`, or None if it has none."""
        body = {"schemaType": "AVRO", "schema": _text(schema)}
        try:
            data = self._request("POST", f"/subjects/{_seg(subject)}", body=body)
        except (SubjectNotFound, VersionNotFound, SchemaNotFound):
            return None
        return _registered(subject, data)

    def get_by_id(self, schema_id: int) -> str:
        """The schema text with global ID `schema_id`; fetched once, then cached."""
        cached = self._by_id.get(schema_id)
        if cached is not None:
            return cached
        with self._guard:
            lock = self._id_locks.setdefault(schema_id, threading.Lock())
        with lock:
            cached = self._by_id.get(schema_id)
            if cached is not None:
                return cached
            data = self._request("GET", f"/schemas/ids/{int(schema_id)}", not_found=SchemaNotFound)
            text = str(data["schema"])
            with self._guard:
                self._by_id[schema_id] = text
                self._id_locks.pop(schema_id, None)
            return text

    def latest(self, subject: str) -> RegisteredSchema:
        """The latest version of `subject`."""
        return self.version(subject, "latest")

    def version(self, subject: str, version: int | str) -> RegisteredSchema:
        """One version of `subject` (a number or "latest")."""
        data = self._request(
            "GET", f"/subjects/{_seg(subject)}/versions/{version}", not_found=VersionNotFound
        )
        return _registered(subject, data)

    def versions(self, subject: str) -> list[int]:
        """Version numbers of `subject`, oldest first."""
        return sorted(int(v) for v in self._request("GET", f"/subjects/{_seg(subject)}/versions"))

    def subjects(self) -> list[str]:
        """Every subject, sorted."""
        return sorted(str(s) for s in self._request("GET", "/subjects"))

    def delete_subject(self, subject: str, *, permanent: bool = False) -> list[int]:
        """Delete `subject` (soft, then hard if `permanent`); the deleted versions."""
        deleted = self._request("DELETE", f"/subjects/{_seg(subject)}")
        if permanent:
            self._request("DELETE", f"/subjects/{_seg(subject)}", params={"permanent": "true"})
        return [int(v) for v in deleted]

    # -- compatibility ---------------------------------------------------------------
    def get_compatibility(self, subject: str | None = None) -> str | None:
        """The subject's compatibility level (falling back to the global one), or None."""
        path = f"/config/{_seg(subject)}" if subject else "/config"
        try:
            data = self._request("GET", path, params={"defaultToGlobal": "true"})
        except (SubjectNotFound, VersionNotFound):
            return None
        level = data.get("compatibilityLevel") or data.get("compatibility")
        return str(level) if level else None

    def set_compatibility(self, subject: str, level: str) -> str:
        """Set the subject's compatibility level; the level the registry now reports."""
        data = self._request("PUT", f"/config/{_seg(subject)}", body={"compatibility": level.upper()})
        return str(data.get("compatibility") or data.get("compatibilityLevel") or level)

    def test_compatibility(
        self, subject: str, schema: SchemaArg, version: int | str | None = "latest"
    ) -> CompatibilityResult:
        """Is `schema` compatible with one version of `subject` under its level? With reasons.

        `version=None` asks `/versions`, whose meaning differs between registries:
        Apicurio 2.6 checks every version whatever the level, Confluent only the ones
        the level names. `would_accept` gives the registration verdict on both.
        A subject with no versions is compatible: there is nothing to break.
        """
        body = {"schemaType": "AVRO", "schema": _text(schema)}
        path = f"/compatibility/subjects/{_seg(subject)}/versions"
        if version is not None:
            path += f"/{version}"
        try:
            data = self._request(
                "POST", path, body=body, params={"verbose": "true"}, not_found=VersionNotFound
            )
        except (SubjectNotFound, VersionNotFound):
            if self.versions_or_empty(subject):
                raise
            return CompatibilityResult(True, (f"{subject} has no versions yet",))
        messages = data.get("messages") or ([data["reason"]] if data.get("reason") else [])
        return CompatibilityResult(bool(data.get("is_compatible")), tuple(map(str, messages)))

    def would_accept(self, subject: str, schema: SchemaArg) -> CompatibilityResult:
        """Would registering `schema` under `subject` pass its compatibility level?"""
        level = (self.get_compatibility(subject) or "NONE").upper()
        if level == "NONE":
            return CompatibilityResult(True)
        if level.endswith("_TRANSITIVE"):
            return self.test_compatibility(subject, schema, None)
        return self.test_compatibility(subject, schema, "latest")

    def versions_or_empty(self, subject: str) -> list[int]:
        """Like `versions`, but an unknown subject has no versions instead of an error."""
        try:
            return self.versions(subject)
        except SubjectNotFound:
            return []


_NOT_FOUND_CODES: dict[int | None, type[RegistryError]] = {
    40401: SubjectNotFound,
    40402: VersionNotFound,
    40403: SchemaNotFound,
}


def _error_code(response: httpx.Response) -> int | None:
    try:
        code = response.json().get("error_code")
    except (ValueError, AttributeError):
        return None
    return int(code) if isinstance(code, int) else None


def _tls_reason(exc: Exception) -> str:
    text = str(exc)
    if "CERTIFICATE_VERIFY_FAILED" in text:
        return "its certificate is not signed by a trusted CA"
    return "the server does not speak TLS on this port"


def _seg(value: str) -> str:
    return quote(value, safe="")


def _registered(subject: str, data: Mapping[str, Any]) -> RegisteredSchema:
    return RegisteredSchema(
        subject=str(data.get("subject", subject)),
        version=int(data["version"]),
        id=int(data["id"]),
        schema=str(data["schema"]),
    )


def _error_message(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return response.text[:200] or response.reason_phrase
    if isinstance(data, dict) and "message" in data:
        return str(data["message"])[:500]
    if isinstance(data, dict) and isinstance(data.get("error"), dict) and "message" in data["error"]:
        # Apicurio's shape for errors outside the ccompat API (401s from its auth layer)
        return str(data["error"]["message"])[:500]
    return str(data)[:200]
