"""The cluster managers' workspace: pages in the browser over the same v1 API."""
