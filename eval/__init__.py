"""Evaluation suite for ganplug (installed as ganplug.eval)."""
