"""Corral: a production process manager for Python services, and for any other program.

This module is imported by applications too (``import corral``), so it must stay
light: nothing heavy is imported here.
"""

__version__ = "0.1.0"
