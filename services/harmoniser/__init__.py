"""The harmoniser: Sarek processing of accepted submissions as tracked, restartable jobs."""
