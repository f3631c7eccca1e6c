"""Tests of einrel.runtime."""
