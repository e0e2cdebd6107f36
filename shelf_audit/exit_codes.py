"""The exit statuses of every ``shelf-audit`` subcommand: their one definition.

Schedulers (systemd, cron, Kubeflow) and scripts read them; docs/running.md lists them.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
# `run`: the candidate was not blessed, or not published (the live gate, a failed variant).
EXIT_NOT_BLESSED = 3
# `pack`: some files were skipped (listed in the report), the others were packed.
EXIT_SKIPPED = 4
# `run`: another run holds the home's lock; nothing was done, try later (sysexits' EX_TEMPFAIL).
EXIT_BUSY = 75
