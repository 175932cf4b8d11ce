"""The built-in optimizer plugins; ``plugins.DEFAULT_PLUGINS`` lists the modules that are plugins."""
