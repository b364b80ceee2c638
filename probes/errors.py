"""The one user-facing error type of iclens.

Raise `IclensError` for bad input a user can fix (unknown model, too-long
sequence, missing file). The CLI prints its message as one line and exits with
code 2; the explorer shows it with `st.error`. Anything else is a bug and keeps
its traceback.
"""


class IclensError(ValueError):
    """Bad input a user can fix; the message says what to do."""
