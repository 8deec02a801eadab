"""Sphere: keep a referral-based professional top of mind with email worth reading."""

__version__ = "0.1.0"
