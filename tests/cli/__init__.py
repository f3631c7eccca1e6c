"""Tests of einrel.cli."""
