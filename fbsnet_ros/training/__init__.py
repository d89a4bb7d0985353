"""Training: losses, schedules and the loop."""
