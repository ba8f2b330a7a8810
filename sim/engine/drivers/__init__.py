"""The two drivers over the one kernel: `fast` (one compiled loop; the facility at barriers) and
`step` (one SimPy process per replica, one event per batch step: the driver to read, and the one
that runs plug-ins in plain Python); `facility` hosts the facility's processes for either."""
