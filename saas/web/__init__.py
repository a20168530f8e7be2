"""The web app: the factory, extensions, request hooks, views and template filters."""
