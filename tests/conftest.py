"""Shared fixtures. Plugin-author fixtures come from pipetune.testing (a pytest plugin)."""
