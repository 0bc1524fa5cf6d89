import sys
from pathlib import Path

from clientenv import clients, rsa_ec_only  # noqa: E402,F401  (fixtures)
