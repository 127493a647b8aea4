"""Process plumbing shared by every layer: interrupts, file locks, progress, user errors."""
