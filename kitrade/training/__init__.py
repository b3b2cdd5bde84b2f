"""Training: NHITS fit/evaluate, Ray tasks and Tune, progress, registry, retraining."""

__all__: list[str] = []
