"""The library's own code, which CPU profiles leave out.

A stack is cut where the library's frames begin (code in files under the
package directory): the library's work and whatever it calls are not the
application's. The exception is the few library frames that only call the
application's code, such as the wrapper of ``@agent.profile(...)``: they are
marked with ``calls_application`` and are skipped, not cut, so the decorated
function and its callees stay in the profile.
"""

from __future__ import annotations

import os
from types import CodeType
from typing import Callable, Set, TypeVar

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
_PASS_THROUGH: Set[CodeType] = set()

F = TypeVar("F", bound=Callable[..., object])


def calls_application(func: F) -> F:
    """Mark a library function whose frame only calls the application's code."""
    _PASS_THROUGH.add(func.__code__)
    return func


def is_library_code(code: CodeType) -> bool:
    return code.co_filename.startswith(PACKAGE_DIR)


def passes_through(code: CodeType) -> bool:
    return code in _PASS_THROUGH
