"""Errors that the CLI turns into one clear message and an exit code, never a traceback."""

from __future__ import annotations


class ScaleoutError(Exception):
    """An error the user can act on. `exit_code` is what the CLI returns."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"

    def __reduce__(self) -> tuple:
        # Across processes (a process pool, Ray) an error is pickled; rebuild it from its own
        # arguments and keep every attribute, the hint included.
        return (type(self), (self.message,), self.__dict__)


class UsageError(ScaleoutError):
    """Bad input: a flag, a file, a key or a value. Exit code 2, like argparse."""

    exit_code = 2


class SpaceError(UsageError):
    """A search-space file is missing or invalid. The message names the file and the key path."""

    def __init__(self, path: object, key: str | None, problem: str, *, hint: str | None = None):
        where = f"{path}" if not key else f"{path}: {key}"
        super().__init__(f"{where}: {problem}", hint=hint)
        self.path = path
        self.key = key
        self.problem = problem

    def __reduce__(self) -> tuple:
        return (type(self), (self.path, self.key, self.problem), self.__dict__)


class StateError(ScaleoutError):
    """The sweep's stored state refuses the request (locked, mismatched space, missing sweep)."""

    exit_code = 3


SECRET = "***"


def redact_url(url: str) -> str:
    """A store's URL with the password of its user part masked (`postgresql://me:***@db/x`,
    `https://me:***@mlflow.example`), so that messages and files never hold a credential.
    Other URLs (SQLite paths, URLs without a password) come back unchanged."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    netloc, slash, path = rest.partition("/")
    user, at, host = netloc.rpartition("@")
    if not at or ":" not in user:
        return url
    name = user.split(":", 1)[0]
    return f"{scheme}://{name}:{SECRET}@{host}{slash}{path}"


def has_secret(url: str | None) -> bool:
    """Whether a URL holds a password (`redact_url` would change it)."""
    return url is not None and redact_url(url) != url


def scrub(text: str, url: str) -> str:
    """`text` (an error message about `url`) without the URL's password, wherever it shows."""
    masked = redact_url(url)
    if masked == url:
        return text
    secret = url.partition("://")[2].partition("/")[0].rpartition("@")[0].split(":", 1)[1]
    from urllib.parse import unquote

    for shown in dict.fromkeys((secret, unquote(secret))):
        text = text.replace(url, masked).replace(shown, SECRET)
    return text
