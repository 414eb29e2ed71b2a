"""The suite's own guard rails."""

from __future__ import annotations

import pytest

LEAKY_TEST = '''
import asyncio

async def test_leaks():
    asyncio.get_running_loop().create_task(asyncio.sleep(30), name="forgotten-task")
'''


def test_a_leaked_task_fails_the_test(pytester: pytest.Pytester) -> None:
    """The autouse guard in conftest turns a forgotten task into a failure."""
    pytester.makeconftest(open(__file__.replace("test_hygiene.py", "conftest.py")).read())
    pytester.makepyfile(test_leaky=LEAKY_TEST)
    result = pytester.runpytest("-p", "no:cacheprovider", "-o", "asyncio_mode=auto",
                                "-o", "asyncio_default_fixture_loop_scope=function")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*leaked asyncio tasks*forgotten-task*"])
