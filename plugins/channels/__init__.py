"""The built-in channel plugins; ``plugins.DEFAULT_PLUGINS`` lists the modules that are plugins."""
