"""The local SMTP sink of the native stack: every message Alertmanager sends becomes one
.eml file in a folder, so people and tests read alert mail without a real mail server."""
