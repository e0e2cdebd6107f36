"""What a refused call says: the message of the error it raises, for the test to assert on."""

from __future__ import annotations

from collections.abc import Callable

import pytest


def refusal(error: type[BaseException], call: Callable[..., object], *args: object, **kwargs: object) -> str:
    """The message of the ``error`` that ``call(*args, **kwargs)`` raises; the test fails when it raises none."""
    with pytest.raises(error) as raised:
        call(*args, **kwargs)
    return str(raised.value)
