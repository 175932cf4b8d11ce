"""The built-in incentive-type plugins; ``plugins.DEFAULT_PLUGINS`` lists the modules that are plugins."""
