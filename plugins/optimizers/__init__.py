"""Built-in optimizers plugins (each module is one plugin listed in ``plugins.DEFAULT_PLUGINS``)."""
