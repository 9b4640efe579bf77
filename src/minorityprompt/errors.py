"""The library's one exception type."""


class MinorityPromptError(ValueError):
    """Invalid input or state, with a message that names the value and the fix.

    Subclasses `ValueError`, so callers that already catch `ValueError` around argument
    checks keep working.
    """
