"""Tests of einrel.memory."""
