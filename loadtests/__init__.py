"""Load tests for the vaccination registration service (locust); see README.md."""
