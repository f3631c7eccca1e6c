"""Tests of einrel.ir."""
