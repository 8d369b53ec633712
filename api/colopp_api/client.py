"""A small synchronous client of the API, for the CLI (``COLOPP_API_URL`` + token)."""

from __future__ import annotations

import os
import ssl
import time
from pathlib import Path
from typing import Any

import httpx

from colopp.errors import ColoppError, ConfigError
from colopp_api.config import read_secret_file


class ApiError(ColoppError):
    """The API refused a request or could not be reached; the message is its reason.

    ``status`` is the HTTP status of a refusal (None when no answer came); ``unreachable``
    says the API could not be reached at all (the CLI maps both to its exit codes).
    """

    def __init__(self, message: str, status: int | None = None, unreachable: bool = False):
        super().__init__(message)
        self.status = status
        self.unreachable = unreachable


def configured() -> bool:
    """Whether the CLI should go through an API (``COLOPP_API_URL`` is set)."""
    return bool(os.environ.get("COLOPP_API_URL"))


class ApiClient:
    """Calls one colopp API with a bearer token."""

    def __init__(
        self, url: str, token: str, timeout: float = 30.0, ca_file: str | None = None
    ) -> None:
        self._http = httpx.Client(
            base_url=url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout,
            verify=ssl.create_default_context(cafile=ca_file) if ca_file else True,
        )

    @classmethod
    def from_env(cls) -> ApiClient:
        """``COLOPP_API_URL`` and ``COLOPP_API_TOKEN`` (or ``COLOPP_API_TOKEN_FILE``), and
        ``COLOPP_API_CA_FILE`` for an HTTPS API whose certificate a private CA signed.

        Raises:
            ConfigError: no URL or no token.
        """
        url = os.environ.get("COLOPP_API_URL")
        if not url:
            raise ConfigError("COLOPP_API_URL is not set")
        token = os.environ.get("COLOPP_API_TOKEN")
        if not token and os.environ.get("COLOPP_API_TOKEN_FILE"):
            token = read_secret_file(Path(os.environ["COLOPP_API_TOKEN_FILE"]))
        if not token:
            raise ConfigError("set COLOPP_API_TOKEN or COLOPP_API_TOKEN_FILE for COLOPP_API_URL")
        # An API with a certificate from a private CA: COLOPP_API_CA_FILE names the CA.
        return cls(url, token, ca_file=os.environ.get("COLOPP_API_CA_FILE") or None)

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """One call; returns the JSON body.

        Raises:
            ApiError: transport failure or a 4xx/5xx answer (with the API's reason).
        """
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ApiError(f"API {method} {path}: {exc}", unreachable=True) from exc
        if response.status_code >= 400:
            try:
                reason = response.json().get("detail", response.text)
            except ValueError:
                reason = response.text
            raise ApiError(
                f"API {method} {path}: {response.status_code} {reason}", response.status_code
            )
        return response.json()

    def protections(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.request("GET", "/v1/protections")["protections"]
        return result

    def find(self, name: str | None) -> dict[str, Any]:
        """The protection called ``name``, or the only active one.

        Raises:
            ApiError: none or several match.
        """
        found = [
            p
            for p in self.protections()
            if not p["stopped"] and (name is None or p["name"] == name or p["id"] == name)
        ]
        if not found:
            raise ApiError(f"no active protection matches {name or '(any)'}", 404)
        if len(found) > 1:
            raise ApiError(
                f"{len(found)} active protections match {name or '(any)'}: name one", 400
            )
        return found[0]

    def wait_state(self, protection_id: str, states: set[str], timeout: float) -> dict[str, Any]:
        """Poll until the protection is in one of ``states`` (or ``error``)."""
        deadline = time.monotonic() + timeout
        while True:
            current: dict[str, Any] = self.request("GET", f"/v1/protections/{protection_id}")
            if current["state"] in states or current["state"] == "error":
                return current
            if time.monotonic() > deadline:
                raise ApiError(f"protection {protection_id} is still {current['state']}")
            time.sleep(0.5)  # the API has no push channel: poll
