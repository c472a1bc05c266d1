"""A course on one server: JupyterHub with local system users, the workshop
kernel as every student's default, the course notebooks in each new home.

``server`` installs the hub's directory and starts and stops the hub without
systemd; ``config`` is what the hub's own ``jupyterhub_config.py`` calls."""
