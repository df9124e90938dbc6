"""Run the embedded MongoDB-wire-protocol server (nx-27017) with quiet logs.

It logs every command at INFO, which under load costs more than the commands themselves;
warnings and errors still reach var/log/mongodb.log.
"""

import logging
import sys

from nx_27017.nx_27017 import main

if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, stream=sys.stdout,
                        format='{"time":"%(asctime)s","level":"%(levelname)s","service":"mongodb",'
                               '"instance":"mongodb","message":"%(message)s"}')
    main()
