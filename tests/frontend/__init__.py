"""Tests of einrel.frontend."""
