"""The memory engine: a memory graph's static schedule (`schedule`), the threaded engine that
runs it on arenas (`engine`), its simulated clock (`sim`) and its timelines (`trace`)."""
