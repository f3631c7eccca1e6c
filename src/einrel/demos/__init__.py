"""The demos behind `einrel demo`: a LLaMA-block training step end to end (`demo`) and the
same on Ray (`ray`)."""
