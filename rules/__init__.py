"""The sample rule files, message, field catalogue and audience, installed as the ``herald_samples``
package's data (see pyproject.toml) so that ``herald demo`` finds them via importlib.resources."""
