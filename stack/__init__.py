"""The native supervisor behind ./init.sh: starts, watches and stops every part on 127.0.0.1."""
