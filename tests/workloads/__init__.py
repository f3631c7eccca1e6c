"""Tests of einrel.workloads."""
