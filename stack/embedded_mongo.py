"""Run the embedded MongoDB-wire-protocol server (nx-27017) with quiet logs.

It logs every command at INFO, which under load costs more than the commands themselves;
warnings and errors still reach var/log/mongodb.log, as the stack's JSON lines.
"""

from nx_27017.nx_27017 import main

from common import logs

if __name__ == "__main__":
    logs.configure("mongodb", "mongodb", "WARNING")  # its own basicConfig then finds a handler and does nothing
    main()
