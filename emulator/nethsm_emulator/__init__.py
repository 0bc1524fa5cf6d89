"""NetHSM emulator: a separate distribution, never imported by p11nethsm."""
from .emulator import Emulator, Instance

__all__ = ["Emulator", "Instance"]
__version__ = "0.1.0"
