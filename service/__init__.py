"""Herald's deployable shell: the CLI now; the HTTP service and storage come with their issues."""
