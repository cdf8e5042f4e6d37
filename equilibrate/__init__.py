"""Equilibrate: real-time pre-delinquency intervention engine for retail banks."""

__version__ = "0.1.0"
