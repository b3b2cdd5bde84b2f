"""Use cases: plain functions over settings and a database that compose the layers below."""
