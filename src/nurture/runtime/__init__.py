"""One step of one lead through a compiled scenario: pure, no I/O."""
