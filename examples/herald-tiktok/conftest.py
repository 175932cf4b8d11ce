"""Enable Herald's contract test kit for this package's tests."""

pytest_plugins = ["engine.testing"]
