"""A loopback test phone for the real adb server: Android's own shell (mksh) and tools
(toybox) in a namespace of its own (see phone.py). Test code: users never run it."""

from .phone import TestPhone, available, fake_benchmark_binary

__all__ = ["TestPhone", "available", "fake_benchmark_binary"]
