"""Stands in for ``__main__`` in kata sandboxes, so spawn and forkserver children boot us first."""

from pytest_katas import boot

boot.install()
