"""Shared fixtures. Plugin-author fixtures come from pipetune.testing (a pytest plugin)."""

try:  # property tests must not fail on a busy 2-core machine because one example was slow
    from hypothesis import settings

    settings.register_profile("pipetune", deadline=None)
    settings.load_profile("pipetune")
except ImportError:  # hypothesis is a dev extra
    pass
