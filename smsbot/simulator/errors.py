"""What the simulator refuses: bad input to its API, in process or over HTTP (400)."""


class SimSmscError(ValueError):
    """Bad input to the simulator's API (reported as HTTP 400 by the control API)."""
