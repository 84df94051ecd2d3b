"""Named exit codes of the ``streamfuse`` commands (shared by :mod:`streamfuse.cli` and the
gateway's :class:`~streamfuse.gateway.server.Server`)."""

EXIT_OK = 0
#: a StreamfuseError at run time: unreachable broker, refused login, TLS failure, a port taken
EXIT_FAILURE = 1
#: bad command-line usage (argparse's own code) or a bad setting (a ConfigError)
EXIT_USAGE = 2
#: shutdown was still running past its bound: the watchdog dumped every stack and exited
EXIT_STUCK = 3
#: interrupted (a second SIGINT/SIGTERM, or Ctrl-C outside a daemon)
EXIT_INTERRUPTED = 130
