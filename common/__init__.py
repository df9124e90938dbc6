"""Code shared by the instance and middleware services: logging, metrics, errors, data model."""
