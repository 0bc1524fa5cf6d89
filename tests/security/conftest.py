import os
import sys

import pytest

from secenv import MODULE


@pytest.fixture(autouse=True)
def _need_module():
    if not os.path.exists(MODULE):
        pytest.skip(f"{MODULE} not built (make build)")
