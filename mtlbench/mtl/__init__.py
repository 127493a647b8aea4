"""The multi-task problem: tasks, their scores and references, the shared-trunk model, delta-m."""
