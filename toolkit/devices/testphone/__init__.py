"""A loopback test phone for the real adb server (see phone.py)."""

from .phone import TestPhone, fake_benchmark_binary

__all__ = ["TestPhone", "fake_benchmark_binary"]
