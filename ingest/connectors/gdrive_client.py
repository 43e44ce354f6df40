"""Google Drive v3 through Google's own client (``google-api-python-client``), as a service
account (``google-auth``): the service built from the settings, and its failures said for
the person who can fix them.

The key file is named by ``DML_GDRIVE_CREDENTIALS`` and read at each sync, never stored;
``DML_GDRIVE_SUBJECT`` makes the account act for a Workspace user (domain-wide delegation).
Every request is executed with the client's own retries (``num_retries``): 429 and 403
``rateLimitExceeded``/``userRateLimitExceeded`` answers, and 5xx, are tried again after an
exponential, randomised wait (googleapiclient.http's ``_should_retry_response``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from knowledge.errors import SourceError
from knowledge.settings import Settings
from knowledge.sources import redact_credentials

__all__ = ["DriveError", "DriveService", "SCOPE"]

SCOPE = "https://www.googleapis.com/auth/drive.readonly"
RETRIES = 5  # the client's retries of 429 / rate-limit 403 / 5xx answers (waits 1, 2, 4, 8, 16 s at most)
TIMEOUT = 60
RATE_REASONS = {"rateLimitExceeded", "userRateLimitExceeded"}
SETTING = "DML_GDRIVE_CREDENTIALS"


class DriveError(SourceError):
    """Drive refused or could not be reached; ``fatal``: nothing else will read either (the
    credentials, a storm of 429s), so the sync stops rather than report every file."""

    def __init__(self, where: str, problem: str, *, fatal: bool = False, status: int | None = None,
                 reason: str | None = None):
        super().__init__(where, problem)
        self.fatal = fatal
        self.status = status
        self.reason = reason


class DriveService:
    """The Drive v3 service of one sync, built on first use."""

    def __init__(self, settings: Settings, where: str):
        self.settings = settings
        self.where = where
        self._built: Any = None

    def _service(self) -> Any:
        if self._built is None:
            self._built = self._build()
        return self._built

    def _build(self) -> Any:
        import google_auth_httplib2
        import httplib2
        from google.oauth2 import service_account
        from googleapiclient.discovery import build

        path = self.settings.gdrive_credentials
        if path is None:
            raise DriveError(self.where, f"reading Google Drive needs {SETTING}: the path of a service "
                             "account's JSON key file (share the folder with the account's e-mail)",
                             fatal=True)
        try:
            credentials = service_account.Credentials.from_service_account_file(str(path), scopes=[SCOPE])
        except OSError as exc:
            raise DriveError(self.where, f"{SETTING} names {path}, which cannot be read "
                             f"({exc.strerror or type(exc).__name__})", fatal=True) from None
        except (ValueError, KeyError, TypeError) as exc:  # not JSON, not a service account's key
            raise DriveError(self.where, f"{SETTING} names {path}, which is not a service account's JSON "
                             f"key file ({type(exc).__name__}: {str(exc)[:160]})", fatal=True) from None
        if self.settings.gdrive_subject:
            credentials = credentials.with_subject(self.settings.gdrive_subject)
        http = google_auth_httplib2.AuthorizedHttp(credentials, http=httplib2.Http(timeout=TIMEOUT))
        options = {"api_endpoint": self.settings.gdrive_api_url} if self.settings.gdrive_api_url else None
        # The discovery document ships in the package: nothing is fetched to build the client.
        return build("drive", "v3", http=http, static_discovery=True, cache_discovery=False,
                     client_options=options)

    def call(self, request: Callable[[Any], Any], *, what: str) -> Any:
        """``request(service)`` executed, with retries; ``DriveError`` saying why not."""
        import httplib2
        from google.auth.exceptions import RefreshError, TransportError
        from googleapiclient.errors import HttpError

        service = self._service()
        try:
            return request(service).execute(num_retries=RETRIES)
        except HttpError as exc:
            raise self._refused(exc, what) from None
        except RefreshError as exc:
            said = str(exc.args[0]) if exc.args else type(exc).__name__
            raise DriveError(self.where, f"{what}: Google refused the service account's credentials "
                             f"({redact_credentials(said)[:200]}): check the key file {SETTING} names"
                             + (" and DML_GDRIVE_SUBJECT" if self.settings.gdrive_subject else ""),
                             fatal=True) from None
        except (TransportError, httplib2.HttpLib2Error, OSError) as exc:
            raise DriveError(self.where, f"{what}: Google Drive cannot be reached ({type(exc).__name__})",
                             fatal=True) from None
        except ValueError as exc:  # an answer that is not JSON
            raise DriveError(self.where, f"{what}: Drive's answer could not be read ({str(exc)[:160]})") \
                from None

    def _refused(self, exc: Any, what: str) -> DriveError:
        status = int(getattr(exc.resp, "status", 0) or 0)
        reason, message = _reason(exc)
        said = f"HTTP {status}" + (f" {reason}" if reason else "")
        if status == 429 or reason in RATE_REASONS:
            return DriveError(self.where, f"{what}: Google Drive kept answering {said} (too many requests, "
                              f"tried {RETRIES + 1} times); the next sync tries again", fatal=True,
                              status=status, reason=reason)
        if status == 401:
            return DriveError(self.where, f"{what}: Google Drive refused the credentials ({said}): check the "
                              f"key file {SETTING} names", fatal=True, status=status, reason=reason)
        if status == 404:
            return DriveError(self.where, f"{what}: not found ({said}), or not shared with the service "
                              "account", status=status, reason=reason)
        if status == 403 and reason == "exportSizeLimitExceeded":
            return DriveError(self.where, f"{what}: too large to export (Google exports at most 10 MB)",
                              status=status, reason=reason)
        if status == 403:
            return DriveError(self.where, f"{what}: the service account may not read this ({said}: "
                              f"{message[:160]})", status=status, reason=reason)
        return DriveError(self.where, f"{what}: Google Drive answered {said}: {redact_credentials(message)[:200]}",
                          status=status, reason=reason)


def _reason(exc: Any) -> tuple[str | None, str]:
    """(the first ``errors[].reason``, the message) of Drive's error body."""
    try:
        body = json.loads(exc.content.decode("utf-8"))
        error = body.get("error") or {}
        errors = error.get("errors") or [{}]
        return (errors[0].get("reason") or None), str(error.get("message") or "")
    except (ValueError, AttributeError, TypeError, IndexError):
        return None, str(getattr(exc, "reason", "") or "")
