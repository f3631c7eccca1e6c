"""Tests of einrel.place."""
