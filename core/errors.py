"""The exceptions that are the user's to fix: the CLI prints their message instead of a traceback.

Each package's errors about bad input, a missing thing or a refused request subclass :class:`UserError` (a
``ValueError``), so this module imports nothing of theirs.
"""

from __future__ import annotations

from pydantic import ValidationError


class UserError(ValueError):
    """Something the user can fix: bad input, a thing that does not exist, a request that is refused."""


# What the CLI reports in one line: UserError and its kinds, settings that do not validate, a missing file, and
# still any ValueError (some argument checks raise plain ValueErrors).
USER_ERRORS: tuple[type[Exception], ...] = (UserError, ValidationError, FileNotFoundError, ValueError)
