"""Tests of einrel.decompose."""
