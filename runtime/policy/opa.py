"""The remote backend: an OPA server (or sidecar) over its Data API, via opa-python-client.

Deploy the same `policies/` folder to OPA as a bundle, `opa run --server --bundle
policies/`: bundle mode takes data only from files named data.json (mounted at
their directory's path). Without `--bundle`, OPA loads every .json and .yaml file as data,
cases.yaml and the schema included, and refuses to start on the conflicts. This
engine's bundle hash is that folder's, so runs pin the same rules either way."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import requests
from opa_client.opa import OpaClient

from autopilot.runtime.contracts.hashing import sha256_hex
from autopilot.runtime.contracts.policy import Decision
from autopilot.runtime.policy.bundle import bundle_files
from autopilot.runtime.policy.engine import (
    BUNDLE_MISMATCH,
    UNAVAILABLE,
    PolicyLoadError,
    parse_decision,
)
from autopilot.runtime.policy.schema import validate_data


class OpaEngine:
    def __init__(
        self, url: str, folder: Path, *, timeout_s: float = 1.0, token: str | None = None
    ) -> None:
        parts = urlparse(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"OPA_URL must be http(s)://host[:port], not {url!r}")
        self.url = url
        self.folder = folder
        self._client = OpaClient(
            host=parts.hostname,
            port=parts.port or (443 if parts.scheme == "https" else 8181),
            ssl=parts.scheme == "https",
            timeout=timeout_s,
            retries=0,
            token=token,
        )
        self._files = bundle_files(folder)
        validate_data(self._files)
        self._hash = sha256_hex(self._files)
        self._listeners: list[Callable[[str, dict[str, str]], None]] = []

    def on_load(self, listener: Callable[[str, dict[str, str]], None]) -> None:
        """Call `listener(hash, files)` with the bundle in force and each one loaded later."""
        self._listeners.append(listener)
        listener(self._hash, self._files)

    @property
    def bundle_hash(self) -> str:
        return self._hash

    def reload(self) -> str:
        files = bundle_files(self.folder)
        validate_data(files)  # a bad edit keeps the running bundle
        if sha256_hex(files) != self._hash:
            self._files, self._hash = files, sha256_hex(files)
            for listener in self._listeners:
                listener(self._hash, self._files)
        return self._hash

    def data(self, path: str) -> Any:
        """A data document as the OPA server holds it, e.g. `autopilot/budget/limits`."""
        package, _, name = path.rpartition("/")
        try:
            response = self._client.query_rule(input_data={}, package_path=package, rule_name=name)
        except (requests.RequestException, ValueError) as err:
            raise PolicyLoadError(
                f"OPA at {self.url}: cannot read data/{path}: {type(err).__name__}"
            ) from err
        return response.get("result") if isinstance(response, dict) else None

    def evaluate(self, payload: dict[str, Any], *, pinned_bundle: str | None = None) -> Decision:
        input_hash = sha256_hex(payload)
        if pinned_bundle and pinned_bundle != self._hash:
            return Decision.fail_closed(
                BUNDLE_MISMATCH,
                f"the run pinned policy bundle {pinned_bundle}",
                bundle_hash=self._hash,
                input_hash=input_hash,
            )
        try:
            response = self._client.query_rule(
                input_data=payload, package_path="autopilot", rule_name="decision"
            )
        except (requests.RequestException, ValueError) as err:
            return Decision.fail_closed(
                UNAVAILABLE,
                f"OPA at {self.url} failed: {type(err).__name__}",
                bundle_hash=self._hash,
                input_hash=input_hash,
            )
        # An undefined decision comes back without "result": parse_decision denies it.
        return parse_decision(
            response.get("result") if isinstance(response, dict) else None,
            bundle_hash=self._hash,
            input_hash=input_hash,
        )
