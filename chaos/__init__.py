"""`make chaos`: the archive run as production runs it (every part its own process), a steady signed
webhook load with media, and one fault at a time; then a check that nothing acknowledged was lost or
stored twice. `python -m chaos` runs it; chaos/stack.py is reusable by other harnesses (the soak)."""
