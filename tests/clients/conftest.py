import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from clientenv import clients, rsa_ec_only  # noqa: E402,F401  (fixtures)
