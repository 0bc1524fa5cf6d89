import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from secenv import MODULE  # noqa: E402


@pytest.fixture(autouse=True)
def _need_module():
    if not os.path.exists(MODULE):
        pytest.skip(f"{MODULE} not built (make build)")
